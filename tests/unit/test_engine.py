from streamer.engine import Engine
from streamer.events import Click, ContextEvent, ItemEvent
from streamer.recommender import Request
from streamer.settings import Settings

from .conftest import catalogue_events


def engine(**overrides):
    return Engine(Settings(**{"n_factors": 8, "top_k": 4, "seed": 3, **overrides}))


def test_lists_hold_catalogue_items_and_exclude_history():
    e = engine(seen_items="exclude")
    e.process(catalogue_events())
    out = e.process(
        [
            Click(user="u", item="h0", type="click", ts=1.0),
            Click(user="u", item="c1", type="rating", value=4.0, ts=2.0),
        ]
    )
    (rec,) = out.lists
    items = [item for item, _ in rec.items]
    assert rec.source == "model" and len(items) == 4
    assert not {"h0", "c1"} & set(items)
    assert set(items) <= {ev.item for ev in catalogue_events()}
    assert [s for _, s in rec.items] == sorted((s for _, s in rec.items), reverse=True)


def test_seen_items_are_listed_only_by_recent_under_the_policy_and_by_any_when_allowed():
    for seen, allowed in (("policy", {"recent"}), ("allow", None), ("exclude", set())):
        e = engine(seen_items=seen, top_k=6)
        e.process(catalogue_events())
        e.process([Click(user="v", item=i, type="click", ts=1.0) for i in ("h0", "h1", "c0")])
        (rec,) = e.process([Click(user="u", item="h0", type="click", ts=2.0)]).lists
        placed = {s for (item, _), s in zip(rec.items, rec.strategies, strict=True) if item == "h0"}
        personal = e.recommender.proposals([Request("u", {}, 3.0)])[0][0]
        h0 = e.catalogue.id_of("h0")
        assert (h0 in [i for i, _ in personal]) == (allowed is None)  # the model may list it
        if allowed is not None:
            assert placed <= allowed
        assert ("recent" in e.recommender.policy.names) == (seen != "exclude")


def test_history_is_bounded():
    e = engine(history_size=2)
    e.process(catalogue_events())
    e.process([Click(user="u", item=i, type="click", ts=1.0) for i in ("h0", "h1", "h2")])
    assert set(e.users.history("u")) == {e.catalogue.id_of("h1"), e.catalogue.id_of("h2")}


def test_unknown_user_gets_popular_in_context():
    e = engine(pop_context_keys=("device",))
    e.process(catalogue_events())
    clicks = [
        Click(user=f"u{n}", item="c2", type="click", ts=1.0, context={"device": "tv"})
        for n in range(3)
    ]
    clicks += [Click(user="x", item="h1", type="click", ts=1.0, context={"device": "phone"})]
    e.process(clicks)
    out = e.process(
        [ContextEvent(user="stranger", ts=2.0, context={"device": "tv"})], with_popular=True
    )
    (rec,) = out.lists
    assert rec.source == "popular" and rec.items[0][0] == "c2"
    buckets = {p.key: p for p in out.popular}
    assert buckets["device=phone"].items[0][0] == "h1" and "" in buckets


def test_context_event_reranks_without_learning():
    e = engine()
    e.process(catalogue_events())
    for t in range(30):
        e.process(
            [
                Click(user="u", item="h0", type="click", ts=t, context={"device": "tv"}),
                Click(user="v", item="c0", type="click", ts=t, context={"device": "phone"}),
            ]
        )
    version = e.model.version
    out = e.process([ContextEvent(user="u", ts=99.0, context={"device": "phone"})])
    assert e.model.version == version
    assert out.lists[0].context["device"] == "phone"
    assert e.users.context("u")["device"] == "phone"


def test_new_item_from_items_topic_is_recommendable():
    e = engine(top_k=10)
    e.process(catalogue_events())
    e.process([Click(user="u", item="h0", type="click", ts=1.0)])
    out = e.process(
        [
            ItemEvent(item="h-new", ts=2.0, tags=["horror"]),
            ContextEvent(user="u", ts=2.0, context={}),
        ]
    )
    assert "h-new" in [item for item, _ in out.lists[0].items]


def test_auto_backend_moves_to_an_approximate_index_past_the_threshold():
    e = engine(large_index_min_items=5)
    e.process(catalogue_events()[:4])
    assert e.index.kind == "exact"
    e.process([*catalogue_events()[4:], Click(user="u", item="h0", type="click", ts=1.0)])
    personal = e.strategies[e.settings.strategies.index("personal")]
    assert e.index.kind == "ivf" and personal.index is e.index
    assert len(e.index) == 6
    out = e.process([ContextEvent(user="u", ts=2.0, context={})])
    assert len(out.lists[0].items) == 4


def test_the_personal_order_is_the_engines_score_order():
    """With the popularity prior in the item bias, the index still ranks by Engine.score."""
    e = engine(top_k=6)
    e.process(catalogue_events())
    for t in range(20):
        e.process(
            [
                Click(
                    user=f"u{t % 3}",
                    item=f"{'hc'[t % 2]}{t % 3}",
                    type="click",
                    ts=t,
                    context={"device": "tv"},
                )
            ]
        )
    personal = e.settings.strategies.index("personal")
    proposed = e.recommender.proposals([Request("u0", {"device": "tv"}, 99.0)])[personal][0]
    listed = [e.catalogue.item_of(i) for i, _ in proposed]
    assert len(listed) == 6 - len(e.users.history("u0")) > 0
    e.upkeep.refresh(range(len(e.catalogue)), 0, e.events)  # the index exactly as of now
    scores = {item: e.score("u0", {"device": "tv"}, e.catalogue.id_of(item)) for item in listed}
    assert listed == sorted(listed, key=lambda item: -scores[item])


def test_a_click_carrying_the_rec_id_is_credited_to_the_strategy_that_placed_the_item():
    e = engine(top_k=6)
    e.process(catalogue_events())
    (rec,) = e.process([Click(user="u", item="h0", type="click", ts=1.0)]).lists
    item, strategy = rec.items[0][0], rec.strategies[0]
    e.process([Click(user="u", item=item, type="click", ts=2.0, rec_id=rec.rec_id)])
    e.process([Click(user="u", item="c2", type="click", ts=3.0, rec_id=rec.rec_id)])  # stale
    policy = e.recommender.policy
    assert policy.clicks[strategy] == 1 and sum(policy.clicks.values()) == 1
    assert policy.stale == 1
    assert e.report()["strategies"]["clicks"][strategy] == 1


def test_users_not_seen_for_the_ttl_expire_and_their_rows_are_reused():
    from streamer.events import Click, ItemEvent

    settings = Settings(n_factors=4, top_k=3, user_ttl_s=100.0)
    engine = Engine(settings)
    engine.process([ItemEvent(item=f"i{n}", ts=0.0, tags=["t"]) for n in range(10)])
    stream = [
        Click(user=f"once{n}", item=f"i{n % 10}", type="click", ts=float(n)) for n in range(3000)
    ]
    stream += [Click(user="regular", item="i1", type="click", ts=float(n)) for n in (2950, 2990)]
    for n in range(0, len(stream), 50):
        engine.process(stream[n : n + 50])
    table = engine.model.ranker.table
    # only the users of the last 100 s are kept, with their rows; the others' rows are reused
    assert len(engine.users) <= 102 and engine.expired_users >= 2898
    assert sum(1 for k in table.ids if k.startswith("user=")) <= 102
    assert len(table.ids) + len(table.free) < 250  # rows ever made: 3,000 user ids needed few
    assert list(engine.users.history("regular")) == [engine.catalogue.id_of("i1")]
    assert engine.users.history("once5") == set() and "once5" not in engine.shown
    assert engine.report()["expired_users"] == engine.expired_users


def test_what_the_engine_learns_is_the_same_however_the_stream_is_cut_into_batches():
    """Everything the events teach (both machines' parameters, the rating neighbourhood, the
    co-occurrence counts, popularity, the negative sampler's ring, the histories) and every
    rating's prequential prediction, for batches of 1, 7 and 160 (threads beside the
    learning from 100 events on): the lists differ by batch (a list per user per batch), what
    is learned must not."""
    import random

    import numpy as np

    from streamer.evaluation.prequential import watched

    rng = random.Random(5)
    stream = [*catalogue_events()]
    for n in range(1_200):
        user, item = f"u{rng.randrange(40)}", rng.choice(stream[:20]).item  # type: ignore[union-attr]
        context = {"device": rng.choice(["tv", "phone"]), "hour": str(rng.randrange(24))}
        kind = rng.choice(["rating", "rating", "click", "skip"])
        value = float(rng.randint(1, 5)) if kind == "rating" else None
        stream.append(
            Click(user=user, item=item, type=kind, value=value, ts=float(n), context=context)
        )
    learned = []
    for size in (1, 7, 160):
        e = watched(engine())
        for at in range(0, len(stream), size):
            e.process(stream[at : at + size])
        model, (counts,) = e.model, e._counts
        similar = [counts.similar(range(20), window, 10) for window in counts.windows]
        learned.append(
            {
                "ranker": (
                    model.ranker.table.weights,
                    model.ranker.table.latents,
                    model.ranker.intercept,
                ),
                "rater": (
                    model.rater.table.weights,
                    model.rater.table.latents,
                    model.rater.intercept,
                ),
                "keys": (list(model.ranker.table.ids), list(model.rater.table.ids)),
                "neighbours": (
                    model.neighbours.user_bias,
                    model.neighbours.item_bias,
                    model.neighbours.energy,
                ),
                "mix": model.rating_mix.weight,
                "counts": (counts.table.positives, similar),
                "popularity": {k: dict(e.popularity.counts(k)) for k in list(e.popularity.keys())},
                "sampler": e.sampler._ring,
                "histories": [list(e.users.history(f"u{u}")) for u in range(40)],
                "rmse": e.observers[0].ratings.report(),
            }
        )
    first = learned[0]
    for other in learned[1:]:
        for name, value in first.items():
            np.testing.assert_equal(other[name], value, err_msg=name)
