"""One contract over every candidate strategy, and known answers for each."""

import random

import numpy as np
import pytest

from streamer.engine import Engine
from streamer.events import Click, ItemEvent
from streamer.popularity import Popularity
from streamer.settings import Settings
from streamer.strategies import (
    FreshItems,
    ItemKNN,
    Observation,
    PopularInContext,
    Query,
    RecentItems,
    Strategy,
)
from streamer.strategies.neural import Neural

ITEMS = 40


def _standalone():
    return [
        ItemKNN(last=3, window=10, max_neighbours=5),
        RecentItems(),
        PopularInContext(),
        PopularInContext(global_only=True),
        FreshItems(window=15, cold=10_000),
        Neural(lambda i: {f"item={i}": 1.0, f"group={i // 10}": 0.7}, batch=16, seed=1),
    ]


def _personal():
    engine = Engine(Settings(n_factors=4, top_k=10, seed=1))
    engine.process([ItemEvent(item=str(i), ts=0.0, tags=[f"g{i % 4}"]) for i in range(ITEMS)])
    return engine.strategies[engine.settings.strategies.index("personal")], engine


def _stream(n=600, seed=0):
    """Users who stay inside one of four item groups, in two context buckets."""
    rng = random.Random(seed)
    for _ in range(n):
        user = rng.randrange(30)
        group = user % 4
        yield str(user), group * 10 + rng.randrange(10), f"device={'tv' if user % 2 else 'pc'}"


@pytest.mark.parametrize("make", [*(lambda s=s: s for s in range(6)), None])
def test_every_strategy_keeps_the_contract(make):
    if make is None:
        strategy, engine = _personal()
    else:
        strategy, engine = _standalone()[make()], None
    assert isinstance(strategy, Strategy) and strategy.name
    history: dict[str, list[int]] = {}
    added: set[int] = set()
    for user, item, bucket in _stream():
        if engine is not None:
            engine.process([Click(user=user, item=str(item), type="click", ts=1.0)])
        else:
            if isinstance(strategy, FreshItems) and item not in added:
                strategy.add(item)  # (the first, before any interaction, is not fresh)
                added.add(item)
            strategy.learn(Observation(user, item, bucket, history.get(user, [])))
        history.setdefault(user, []).append(item)
    queries = [
        Query(user, "device=tv", items, exclude=frozenset(items[-3:]))
        for user, items in history.items()
    ] + [Query("nobody", "device=radio", [])]
    lists = strategy.candidates(queries, 7)
    assert len(lists) == len(queries)
    for query, scored in zip(queries, lists, strict=True):
        assert len(scored) <= 7
        ids = [i for i, _ in scored]
        assert len(set(ids)) == len(ids)
        assert all(isinstance(i, int) and 0 <= i < ITEMS for i in ids)
        scores = [s for _, s in scored]
        assert scores == sorted(scores, reverse=True)
        assert not set(ids) & set(query.exclude)
    assert any(lists)  # something was learned


def test_item_knn_finds_the_items_of_the_users_group():
    knn = ItemKNN(last=2, window=10)
    history: dict[str, list[int]] = {}
    for user, item, bucket in _stream(2000):
        knn.learn(Observation(user, item, bucket, history.get(user, [])))
        history.setdefault(user, []).append(item)
    (scored,) = knn.candidates([Query("new", "", [21, 22], exclude={21, 22})], 8)
    assert {i // 10 for i, _ in scored} == {2}
    assert all(i // 10 == 3 for i, _ in knn.similar(35, 5))


def test_item_knn_memory_is_bounded_per_item():
    knn = ItemKNN(last=1, window=200, max_neighbours=10)
    rng = np.random.default_rng(0)
    recent: list[int] = []
    for item in rng.integers(0, 500, 5000).tolist():
        knn.learn(Observation("u", item, "", recent[-200:]))
        recent.append(item)
    assert max(knn.neighbours(item) for item in range(500)) <= 20


def test_popular_in_context_is_never_empty_while_the_catalogue_has_items():
    pop = PopularInContext(popularity=Popularity())
    pop.popularity.add(1, "device=tv")
    pop.popularity.add(2, "device=pc")
    pop.popularity.add(3, "device=pc")
    (scored,) = pop.candidates([Query("u", "device=tv", [1], exclude={1})], 5)
    assert [i for i, _ in scored] and 1 not in [i for i, _ in scored]
    assert {i for i, _ in scored} == {2, 3}


def test_recent_lists_the_users_items_most_recent_first():
    (scored,) = RecentItems().candidates([Query("u", "", [5, 6, 5, 7])], 3)
    assert [i for i, _ in scored] == [7, 5, 6]


def test_item_knn_counts_survive_a_pool_that_is_repacked():
    """A table that started with a tiny pool (repacked and doubled many times, blocks left
    behind by moves dropped) answers exactly as one that never ran out, and holds at most
    twice the blocks its rows use (four times just after doubling)."""
    from streamer.strategies.cooc_kernel import Table

    rng = np.random.default_rng(3)
    tiny, roomy = Table([20, 5], pool=8), Table([20, 5], pool=1 << 20)
    recent: list[int] = []
    for item in rng.integers(0, 300, 3000).tolist():
        before = np.array(recent[-20:], np.int64)
        for table in (tiny, roomy):
            table.learn(np.array([item]), np.array([0, len(before)]), before, 40, 20)
        recent.append(item)
    last, none = np.array([1, 2, 3]), np.array([], np.int64)
    starts = np.array([0, 3])
    answers = [t.score(starts, last, np.array([0, 0]), none, 10) for t in (tiny, roomy)]
    for a, b in zip(*answers, strict=True):
        np.testing.assert_array_equal(a, b)
    assert len(tiny.neighbour) <= 4 * tiny.size.sum()


def test_item_knn_recency_decay_favours_what_follows_the_latest_item():
    knn = ItemKNN(last=2, window=1, decay=0.5)  # pairs of consecutive items only
    for user in range(20):  # 1 -> 10 and 2 -> 20, each seen by 20 users
        for first, then in ((1, 10), (2, 20)):
            knn.learn(Observation(f"{first}:{user}", first, "", []))
            knn.learn(Observation(f"{first}:{user}", then, "", [first]))
    (latest_2,) = knn.candidates([Query("u", "", [1, 2], exclude={1, 2})], 2)
    (latest_1,) = knn.candidates([Query("u", "", [2, 1], exclude={1, 2})], 2)
    assert [i for i, _ in latest_2] == [20, 10] and [i for i, _ in latest_1] == [10, 20]
    plain = ItemKNN(last=2, window=1, counts=knn.counts)  # all alike: a tie, broken by id
    (tied,) = plain.candidates([Query("u", "", [1, 2], exclude={1, 2})], 2)
    (_, first), (_, second) = tied
    assert first == pytest.approx(second)
    with pytest.raises(ValueError, match="decay"):
        ItemKNN(decay=0.0)


def test_item_knn_scores_are_the_cosine_of_a_plain_count_of_pairs():
    """The compiled table (two windows, rows grown and moved, then renumbered as a compaction
    does) against a count of pairs in Python dicts: each positive pairs its item with each of
    the user's last distinct items, ``d`` steps back counting in the windows at least ``d``
    wide; a query's score of ``j`` is ``sum over its items i of w_i c(i, j) / sqrt(n_i n_j)``,
    the best ``k`` (ties: lower id) without its excluded items."""
    from collections import Counter

    from streamer.strategies.cooc_kernel import Table

    rng = np.random.default_rng(11)
    windows = [12, 4]
    table = Table(windows, items=4, pool=64)
    pairs: list[Counter] = [Counter(), Counter()]
    positives: Counter = Counter()
    histories: dict[int, list[int]] = {}
    gone: set[int] = set()  # forgotten (expired) until chosen again

    def learn(events: int) -> None:
        for _ in range(events):
            user, item = int(rng.integers(0, 60)), int(rng.zipf(1.5) % 150)
            history = histories.setdefault(user, [])
            before = [i for i in history if i != item][-windows[0] :]  # distinct, latest last
            table.learn(np.array([item]), np.array([0, len(before)]),
                        np.array(before, np.int64), 10_000, 5_000)  # fmt: skip
            for at, other in enumerate(before):
                for w, width in enumerate(windows):
                    if len(before) - at <= width and other not in gone:
                        pairs[w][item, other] += 1
                        pairs[w][other, item] += 1
            positives[item] += 1
            gone.discard(item)
            history[:] = [*before, item]

    def check() -> None:
        for _ in range(50):
            last = rng.choice(150, int(rng.integers(1, 8)), replace=False)
            weights = rng.uniform(0.1, 1.0, len(last))
            exclude = rng.choice(150, int(rng.integers(0, 20)), replace=False)
            ids, scores, found = table.score(
                np.array([0, len(last)]), last, np.array([0, len(exclude)]), exclude, 10, weights
            )
            for w in range(len(windows)):
                expected: dict[int, float] = {}
                for i, weight in zip(last.tolist(), weights.tolist(), strict=True):
                    for (a, j), c in pairs[w].items():
                        if a == i and j not in exclude and j not in gone:
                            norm = np.sqrt(positives[i] * positives[j])
                            expected[j] = expected.get(j, 0.0) + weight * c / norm
                best = sorted(expected.items(), key=lambda kv: (-kv[1], kv[0]))[:10]
                n = found[w, 0]
                assert n == len(best)
                if not n:
                    continue
                np.testing.assert_allclose(scores[w, 0, :n], [s for _, s in best], rtol=1e-9)
                # the ids, where the scores are not tied to the float
                gaps = np.abs(np.diff([s for _, s in best])) > 1e-9
                distinct = np.concatenate([[True], gaps]) & np.concatenate([gaps, [True]])
                got, want = ids[w, 0, :n][distinct], np.array([i for i, _ in best])[distinct]
                assert got.tolist() == want.tolist()

    learn(3_000)
    check()
    for item in rng.choice(30, 6, replace=False).tolist():  # expired: row and norm gone
        table.forget(item)  # (its count of positives stays, for the pairs others hold)
        for w, counts in enumerate(pairs):
            pairs[w] = Counter({pair: c for pair, c in counts.items() if pair[0] != item})
        gone.add(item)
    check()
    learn(1_000)  # some come back
    check()
    dropped = rng.random(150) < 0.3  # a compaction: ids dropped, the others renumbered
    mapping = np.where(dropped, -1, np.cumsum(~dropped) - 1)
    table.renumber(mapping)
    m = mapping.tolist()
    for w, counts in enumerate(pairs):
        pairs[w] = Counter({(m[a], m[b]): c for (a, b), c in counts.items() if m[a] >= 0 <= m[b]})
    positives = Counter({m[i]: c for i, c in positives.items() if m[i] >= 0})
    gone = {m[i] for i in gone if m[i] >= 0}
    for history in histories.values():
        history[:] = [m[i] for i in history if m[i] >= 0]
    check()
    learn(3_000)  # ids past the kept ones are new items now
    check()


def test_an_expired_item_chosen_again_weighs_as_before_in_the_pairs_others_hold():
    """Item 1 always came before 2 (cosine 1); expired, it is proposed for nobody; chosen
    again once, its pairs in 2's row weigh as before (a count of positives restarted at 1
    gave them a "cosine" of sqrt(50) = 7.07)."""
    knn = ItemKNN(last=1, window=10)
    for user in range(50):
        knn.learn(Observation(f"u{user}", 1, "", []))
        knn.learn(Observation(f"u{user}", 2, "", [1]))
    (before,) = knn.candidates([Query("v", "", [2])], 5)
    knn.counts.forget_item(1)
    (gone,) = knn.candidates([Query("v", "", [2])], 5)
    knn.learn(Observation("w", 1, "", [3]))
    (back,) = knn.candidates([Query("v", "", [2])], 5)
    assert before == [(1, pytest.approx(1.0))] and gone == []
    assert back == [(1, pytest.approx(50 / np.sqrt(50 * 51)))]
