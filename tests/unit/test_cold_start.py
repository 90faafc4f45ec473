"""Cold start with a known answer: a new item placed by its tags, a new user by context."""

from streamer.engine import Engine
from streamer.events import Click, ContextEvent, ItemEvent
from streamer.recommender import Request
from streamer.settings import Settings

GENRES = ("horror", "comedy", "drama", "western")


def trained_engine():
    engine = Engine(Settings(n_factors=8, top_k=5, seed=5, pop_context_keys=("device",)))
    engine.process([ItemEvent(item=f"{g}-{i}", ts=0.0, tags=[g]) for g in GENRES for i in range(8)])
    clicks = []
    for rounds in range(15):
        for g_index, genre in enumerate(GENRES):
            for fan in range(5):
                for i in range(8):
                    user = f"{genre}-fan-{fan}"
                    device = "tv" if g_index % 2 else "phone"
                    clicks.append(
                        Click(
                            user=user,
                            item=f"{genre}-{i}",
                            type="click",
                            ts=float(rounds),
                            context={"device": device},
                        )
                    )
    for start in range(0, len(clicks), 100):  # micro-batches, as the worker takes them
        engine.process(clicks[start : start + 100])
    return engine


def test_a_new_item_reaches_the_users_who_favour_its_tags():
    engine = trained_engine()
    # arrives through the items topic only: no one has interacted with it
    engine.process([ItemEvent(item="horror-new", ts=9.0, tags=["horror"])])
    devices = {g: ("tv" if n % 2 else "phone") for n, g in enumerate(GENRES)}  # as they were
    requests = [Request(f"{g}-fan-0", {"device": devices[g]}, 9.0) for g in GENRES]
    personal = engine.settings.strategies.index("personal")
    proposed = engine.recommender.proposals(requests)[personal]
    lists = {
        r.user: [engine.catalogue.item_of(i) for i, _ in scored]
        for r, scored in zip(requests, proposed, strict=True)
    }

    def rank(user):
        items = lists[user]
        return items.index("horror-new") if "horror-new" in items else len(items)

    # horror fans have seen every old horror item: the model (by the new item's tags alone)
    # puts it near the top of their list, and higher than in the list of any other genre's fan
    assert rank("horror-fan-0") < 3
    assert all(rank("horror-fan-0") < rank(f"{g}-fan-0") for g in GENRES[1:])
    # and it is published to them, though nobody chose it yet (users here only re-consume:
    # the policy alone would fill the list with their own items)
    out = engine.process([ContextEvent(user="horror-fan-0", ts=9.0, context={"device": "phone"})])
    (rec,) = out.lists
    assert "horror-new" in [item for item, _ in rec.items]
    assert rec.strategies[[item for item, _ in rec.items].index("horror-new")] in {
        "personal",
        "fresh",
    }


def test_a_user_never_seen_gets_the_popular_list_of_the_context():
    engine = trained_engine()
    out = engine.process(
        [
            ContextEvent(user="stranger", ts=9.0, context={"device": "tv"}),
            ContextEvent(user="walker", ts=9.0, context={"device": "phone"}),
        ]
    )
    lists = {rec.user: rec for rec in out.lists}
    assert lists["stranger"].source == "popular"
    tv_genres = {item.split("-")[0] for item, _ in lists["stranger"].items}
    phone_genres = {item.split("-")[0] for item, _ in lists["walker"].items}
    assert tv_genres <= {"comedy", "western"} and phone_genres <= {"horror", "drama"}


def test_a_new_item_the_model_places_is_shown_even_once_the_policy_has_judged_fresh():
    engine = trained_engine()
    policy = engine.recommender.policy
    policy._trials[:, policy.names.index("fresh")] = 10_000  # seen and judged: no slot of its own
    engine.process([ItemEvent(item="horror-new", ts=9.0, tags=["horror"])])
    out = engine.process([ContextEvent(user="horror-fan-0", ts=9.0, context={"device": "phone"})])
    (rec,) = out.lists
    listed = [item for item, _ in rec.items]
    assert "horror-new" in listed and rec.strategies[listed.index("horror-new")] == "personal"
