"""Items not seen for STREAMREC_ITEM_TTL_S expire: out of the index and every list, their own
rows freed; back when seen again; what expires does not depend on how the stream is batched."""

from __future__ import annotations

import dataclasses

import numpy as np

from streamer.engine import Engine
from streamer.evaluation.prequential import metrics_report, watched
from streamer.events import Click, ItemEvent
from streamer.settings import Settings

SETTINGS = Settings(n_factors=4, top_k=10, candidates=10, item_ttl_s=200.0, seed=3)


def _stream(n: int, seed: int = 0) -> list[Click | ItemEvent]:
    """30 items; items 0-9 are clicked only in the first 200 events, 10-29 all along (each
    every 20 events or so: a gap of 200 is all but impossible)."""
    rng = np.random.default_rng(seed)
    out: list[Click | ItemEvent] = [
        ItemEvent(item=f"i{i}", ts=0.0, tags=[f"g{i % 3}"]) for i in range(30)
    ]
    for t in range(1, n + 1):
        item = int(rng.integers(0, 30)) if t <= 200 else int(rng.integers(10, 30))
        out.append(Click(user=f"u{rng.integers(25)}", item=f"i{item}", type="click", ts=float(t)))
    return out


def _run(engine: Engine, events: list[Click | ItemEvent], batch: int) -> list[list[str]]:
    lists = []
    for n in range(0, len(events), batch):
        lists += [[i for i, _ in r.items] for r in engine.process(events[n : n + batch]).lists]
    return lists


def test_an_item_not_seen_expires_from_the_index_the_lists_and_the_model() -> None:
    engine = Engine(SETTINGS)
    events = _stream(700)
    _run(engine, events[:460], batch=10)  # items 0-9 last seen by t = 200: expired at 400
    gone = {engine.catalogue.id_of(f"i{i}") for i in range(10)}
    assert engine.catalogue.retired == gone and engine.expired_items == 10
    late = _run(engine, events[460:], batch=10)
    ids, _ = engine.index.all_items()
    assert not gone & set(ids.tolist())
    assert late and not {f"i{i}" for i in range(10)} & {item for lst in late for item in lst}
    assert "item=i0" not in engine.model.ranker.table.ids
    assert "item=i0" not in engine.model.rater.table.ids
    for table in (engine.model.ranker.table, engine.model.rater.table):  # nor as a user's last
        assert not {f"prev=i{i}" for i in range(10)} & set(table.ids)  # items (query side)
    table = next(s.counts.table for s in engine.strategies if hasattr(s, "counts"))
    assert table.size[engine.catalogue.id_of("i0")] == 0
    assert engine.report()["expired_items"] == 10

    # seen again: back in the catalogue's life, learned and indexed again
    engine.process([Click(user="u1", item="i0", type="click", ts=701.0)])
    i0 = engine.catalogue.id_of("i0")
    assert i0 not in engine.catalogue.retired and "item=i0" in engine.model.ranker.table.ids
    assert i0 in set(engine.index.all_items()[0].tolist())


def test_what_expires_does_not_depend_on_the_batches() -> None:
    events = _stream(500, seed=1)
    one, many = Engine(SETTINGS), Engine(SETTINGS)
    _run(one, events, batch=1)
    _run(many, events, batch=37)
    assert one.catalogue.retired == many.catalogue.retired and one.expired_items > 0
    for name in ("weights", "latents"):
        np.testing.assert_array_equal(
            getattr(one.model.ranker.table, name), getattr(many.model.ranker.table, name)
        )


def test_one_off_users_get_no_rows_until_they_recur() -> None:
    settings = Settings(n_factors=4, top_k=5, candidates=5, user_min_events=2, seed=3)
    engine = watched(Engine(settings))
    engine.process([ItemEvent(item=f"i{i}", ts=0.0, tags=[f"g{i % 3}"]) for i in range(20)])
    once = [Click(user=f"once{n}", item=f"i{n % 20}", type="rating", value=4.0, ts=float(n))
            for n in range(300)]  # fmt: skip
    engine.process(once)
    rows = engine.model.ranker.table.ids
    assert not any(key.startswith("user=") for key in rows)  # 300 users, no row for any
    assert not engine.model.neighbours.slots  # nor a neighbourhood memory
    assert metrics_report(engine)["ratings"] == 300  # every rating still predicted and learned
    engine.process([Click(user="once7", item="i3", type="rating", value=5.0, ts=301.0)])
    assert "user=once7" in engine.model.ranker.table.ids and "user=once7" in rows
    assert engine.model.neighbours.recent("user=once7")


def test_a_lagging_partition_does_not_hold_expiry_back() -> None:
    """A worker behind on one partition learns its old events after newer ones of another:
    expiry goes by the stream's time and by when users were seen, so the lagging partition's
    users (already past their time) expire instead of piling up behind the newer ones (they
    did when each event's own time was "now" and arrival order the queue: a 1M-event soak
    through a worker kept 49,000 users instead of ~1,200)."""
    engine = Engine(dataclasses.replace(SETTINGS, user_ttl_s=100.0, item_ttl_s=0.0))
    lead = [Click(user=f"a{n}", item=f"i{n % 30}", type="click", ts=5000.0 + n) for n in range(200)]
    lag = [Click(user=f"b{n}", item=f"i{n % 30}", type="click", ts=float(n)) for n in range(2000)]
    _run(engine, lead, 50)
    _run(engine, lag, 50)
    # kept: the lead users of the last 100 s of stream time, and the lagging user just seen
    assert len(engine.users) == 102
    assert engine.expired_users == 2200 - 102


def test_users_expired_within_their_batch_keep_nothing() -> None:
    """A lagging partition's users expire one after the other within a batch: none of them
    gets a list, and nothing is left of them (the policy's last candidates and the engine's
    last lists leaked: 930,000 arrays in a soak's snapshot)."""
    engine = Engine(dataclasses.replace(SETTINGS, user_ttl_s=100.0, item_ttl_s=0.0))
    lead = [Click(user=f"a{n}", item=f"i{n % 30}", type="click", ts=5000.0 + n) for n in range(200)]
    lag = [Click(user=f"b{n}", item=f"i{n % 30}", type="click", ts=float(n)) for n in range(2000)]
    _run(engine, lead, 50)
    lists = _run(engine, lag, 50)
    assert len(lists) == 2000 // 50  # the batch's last user only: still kept until the next
    remembered = set(engine.shown) | set(engine.recommender.policy._last)
    assert remembered and all(engine.last_seen(user) is not None for user in remembered)
    assert len(engine.users) == 102


def test_an_expired_item_is_in_no_popular_list_until_it_is_seen_again() -> None:
    """A hit clicked 40 times, then never again, keeps its decayed count (counts halve by
    interactions, not time): expired, it leaves the published popular lists and the list the
    prequential audit scores a user without one against; clicked again, it is back."""
    engine = Engine(SETTINGS)
    engine.process([ItemEvent(item=f"i{i}", ts=0.0, tags=["g"]) for i in range(12)])
    clicks = [Click(user=f"u{n}", item="i0", type="click", ts=1.0) for n in range(40)]
    clicks += [
        Click(user=f"v{n}", item=f"i{1 + n % 11}", type="click", ts=10.0 + n) for n in range(400)
    ]
    engine.process(clicks)  # i0 last clicked at 1, expired once the stream passes 201
    hit = engine.catalogue.id_of("i0")
    assert hit in engine.catalogue.retired
    assert engine.popularity.top("", 1) == [(hit, 40.0)]  # still the largest count
    popular = {item for pop in engine.recommender.popular_lists() for item, _ in pop.items}
    assert "i0" not in popular and len(popular) == 10
    assert hit not in engine._popular_for("", ())
    engine.process([Click(user="w", item="i0", type="click", ts=500.0)])
    assert "i0" in {item for pop in engine.recommender.popular_lists() for item, _ in pop.items}
    assert hit in engine._popular_for("", ())


def test_an_item_clicked_only_on_other_workers_does_not_expire_here() -> None:
    """Several workers: clicks are split by user, so an item may be clicked only on other
    workers' partitions; their positives, shared, keep it alive here (item expiry counts
    clicks anywhere in the group), at this worker's stream time."""
    local, alone = Engine(SETTINGS), Engine(SETTINGS)
    for engine in (local, alone):
        engine.process([ItemEvent(item=f"i{i}", ts=0.0, tags=["g"]) for i in range(5)])
        engine.process([Click(user="u", item="i0", type="click", ts=1.0)])
    for t in range(2, 600, 10):  # this worker's users click i1..i4; others' click i0
        clicks = [Click(user=f"v{t}", item=f"i{1 + t % 4}", type="click", ts=float(t))]
        for engine in (local, alone):
            engine.process(clicks)
        local.learn_shared([("i0", "", ["i1"])])
    i0 = local.catalogue.id_of("i0")
    assert i0 not in local.catalogue.retired and i0 in set(local.index.all_items()[0].tolist())
    assert alone.catalogue.id_of("i0") in alone.catalogue.retired  # without the shared clicks


def test_the_neural_strategys_user_rows_are_freed_with_the_users() -> None:
    """With user expiry and the opt-in neural strategy, the user tower keeps rows for the
    users still kept only (freed rows go to new users; a remembered positive of an expired
    user is replayed without its id), not one per user ever seen."""
    settings = dataclasses.replace(
        SETTINGS, user_ttl_s=100.0, item_ttl_s=0.0, strategies=(*SETTINGS.strategies, "neural")
    )
    engine = Engine(settings)
    engine.process([ItemEvent(item=f"i{i}", ts=0.0, tags=[f"g{i % 3}"]) for i in range(30)])
    clicks = [
        Click(user=f"u{n // 2}", item=f"i{(n * 7) % 30}", type="click", ts=float(n))
        for n in range(3_000)
    ]
    _run(engine, clicks, 50)  # 1,500 users, two clicks each; 100 s of them kept at a time
    (neural,) = engine._neural
    ids = [name for name in neural.model.users.rows if name.startswith("user=")]
    assert engine.expired_users > 1_300
    assert len(ids) <= len(engine.users) + 50 and len(neural._users) <= len(engine.users)
    assert not {name[len("user=") :] for name in ids} - {f"u{n}" for n in range(1_440, 1_500)}
