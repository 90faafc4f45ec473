"""Diversity re-ranking: MMR's known answers, off means the policy's own order, and on a
stream it spreads the lists over more of the catalogue."""

from __future__ import annotations

import dataclasses

import numpy as np

from streamer.diversity import Diversifier, TagCap, mmr
from streamer.engine import Engine
from streamer.evaluation.prequential import metrics_report, watched
from streamer.events import Click, ItemEvent
from streamer.settings import Settings

SETTINGS = Settings(n_factors=4, top_k=5, candidates=20, seed=2)


def _stream(seed: int = 0) -> list[ItemEvent | Click]:
    rng = np.random.default_rng(seed)
    events: list[ItemEvent | Click] = [
        ItemEvent(item=f"i{i}", ts=0.0, tags=[f"g{i % 5}"]) for i in range(200)
    ]
    ranks = (rng.zipf(1.3, 3000) - 1) % 200  # a head and a long tail
    for t, item in enumerate(ranks.tolist()):
        user = f"u{rng.integers(150)}"
        events.append(Click(user=user, item=f"i{item}", type="click", ts=t + 1.0))
    return events


def _run(settings: Settings) -> Engine:
    engine = watched(Engine(settings))
    events = _stream()
    for at in range(0, len(events), 40):
        engine.process(events[at : at + 40])
    return engine


def test_mmr_prefers_an_item_unlike_those_placed_and_lam_0_is_the_score_order() -> None:
    rng = np.random.default_rng(0)
    scores, vectors = rng.random(30), rng.normal(size=(30, 4))
    assert mmr(scores, vectors, 10, 0.0).tolist() == np.argsort(-scores)[:10].tolist()
    twins = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    assert mmr(np.array([1.0, 0.9, 0.8]), twins, 2, 0.6).tolist() == [0, 2]
    scores, head = np.array([1.0, 0.99, 0.0]), np.array([100.0, 1.0, 1.0])
    popular = mmr(scores, np.eye(3), 1, 0.5, popularity=head)
    assert popular.tolist() == [1]  # nearly as relevant, far less popular


def test_diversity_spreads_the_lists_over_the_catalogue() -> None:
    off = _run(dataclasses.replace(SETTINGS, diversity=0.0))
    on = _run(dataclasses.replace(SETTINGS, diversity=0.6))
    assert isinstance(on.recommender.rerank, Diversifier) and off.recommender.rerank is None
    before, after = metrics_report(off), metrics_report(on)
    assert after["coverage"] > before["coverage"]
    assert after["gini"] < before["gini"]
    assert after["intra_list_diversity"] > before["intra_list_diversity"]


def test_calibration_gives_a_user_their_own_mix_of_tags() -> None:
    """A third of the users watch comedy, the rest drama; this user 70% drama, then 30%
    comedy: by relevance their list follows their latest items (70% comedy); calibrated, it
    comes back towards their 30%."""
    events: list[ItemEvent | Click] = [
        ItemEvent(item=f"{kind}{i}", ts=0.0, tags=[kind]) for kind in ("d", "c") for i in range(30)
    ]
    rng = np.random.default_rng(1)
    for t in range(1500):
        user = int(rng.integers(60))
        item = f"{'c' if user < 20 else 'd'}{rng.integers(30)}"
        events.append(Click(user=f"u{user}", item=item, type="click", ts=t + 1.0))
    for n in range(10):
        item = f"d{n}" if n < 7 else f"c{n}"
        events.append(Click(user="me", item=item, type="click", ts=2000.0 + n))
    shares = {}
    for lam in (0.0, 0.9):
        engine = Engine(dataclasses.replace(SETTINGS, top_k=10, calibration=lam))
        for at in range(0, len(events), 50):
            out = engine.process(events[at : at + 50])
        (mine,) = [r for r in out.lists if r.user == "me"]
        shares[lam] = sum(item.startswith("c") for item, _ in mine.items) / len(mine.items)
    assert shares[0.0] >= 0.5 and abs(shares[0.9] - 0.3) < abs(shares[0.0] - 0.3), shares


def test_a_cap_per_tag_keeps_lists_to_n_items_of_a_tag() -> None:
    """``STREAMREC_MAX_PER_TAG``: the cheaper re-ranker, instead of MMR; every list holds at most
    N items of a tag (where its pool of candidates allows), and lists are more diverse."""
    off = _run(dataclasses.replace(SETTINGS, diversity=0.0))
    capped = _run(dataclasses.replace(SETTINGS, diversity=0.0, max_per_tag=1))
    assert isinstance(capped.recommender.rerank, TagCap)
    tags = capped.catalogue.tags

    def repeating(engine: Engine) -> float:  # the share of lists with a tag twice
        lists = [[tags[i][0] for i in shown] for shown in engine.shown.values()]
        return sum(len(set(t)) < len(t) for t in lists) / len(lists)

    # a tag repeats only where the pool (3 x 5 candidates) lacked one of the five tags
    assert repeating(capped) < 0.2 < 0.8 < repeating(off)
    before, after = metrics_report(off), metrics_report(capped)
    assert after["intra_list_diversity"] > before["intra_list_diversity"]
