"""The neighbourhood rater: known answers, bounded memory, and its blend with the FM."""

from __future__ import annotations

import numpy as np
import pytest

from streamer.model import RecModel
from streamer.model.neighbours import NeighbourRater
from streamer.model.rating_mix import RatingMix
from streamer.rowpool import EMPTY
from streamer.settings import Settings


def _stream(n_users: int = 200, n_items: int = 40, seed: int = 0) -> list[tuple[int, int, float]]:
    """Users of two tastes rating items of two kinds: 5 for their kind, 1 for the other."""
    rng = np.random.default_rng(seed)
    out = []
    for user in range(n_users):
        for item in rng.choice(n_items, 12, replace=False).tolist():
            out.append((user, item, 5.0 if item % 2 == user % 2 else 1.0))
    return out


def test_it_learns_a_taste_the_baseline_cannot_see() -> None:
    rater = NeighbourRater(last=20, shrink=5.0)
    errors, baseline_errors = [], []
    for n, (user, item, y) in enumerate(_stream()):
        if n > 1000:  # once the pairs are counted
            errors.append(rater.predict_one(user, item) - y)
            baseline_errors.append(rater.baseline(user, item) - y)
        rater.learn_one(user, item, y)
    rmse, baseline_rmse = (
        np.sqrt(np.mean(np.square(errors))),
        np.sqrt(np.mean(np.square(baseline_errors))),
    )
    assert rmse < 0.5 * baseline_rmse  # half the error of mu + b_u + b_i, at least


def test_rows_are_bounded_and_keep_the_most_co_rated_neighbours() -> None:
    rater = NeighbourRater(last=50, max_neighbours=4)
    for user in range(30):  # item 0 with every other item; 1 and 2 with 0 more often
        rater.learn_one(user, 0, 4.0)
        rater.learn_one(user, 3 + user, 3.0)
        if user < 20:
            rater.learn_one(user, 1, 4.0)
            rater.learn_one(user, 2, 2.0)
    assert rater.length.max() <= 2 * 4
    row = rater.neighbour[rater.start[0] : rater.start[0] + rater.size[0]]
    kept = set(row[row != EMPTY].tolist())
    assert {1, 2} <= kept  # co-rated 20 times, every other item once


def test_a_pool_that_grows_answers_as_one_that_was_large_enough() -> None:
    small, large = NeighbourRater(pool=8), NeighbourRater(pool=1 << 16)
    for user, item, y in _stream(60):
        assert small.predict_one(user, item) == pytest.approx(large.predict_one(user, item))
        small.learn_one(user, item, y)
        large.learn_one(user, item, y)
    assert len(small.neighbour) > 8


def test_a_rating_again_replaces_the_old_one_and_forget_drops_the_user() -> None:
    rater = NeighbourRater(last=3)
    for item in (1, 2, 1, 4, 5):
        rater.learn_one("u", item, 4.0)
    items, residuals = rater.recent("u") or ([], [])
    assert items == [1, 4, 5] and len(residuals) == 3  # 1 moved to the end, the oldest dropped
    bias = rater.baseline("u", 9) - rater.mean
    rater.forget("u")
    assert rater.recent("u") is None and bias != 0.0 == rater.baseline("u", 9) - rater.mean
    expected = 3.0 - rater.baseline("v", 2)  # a user never seen: no bias
    rater.learn_one("v", 2, 3.0)  # the slot is reused, starting clean
    assert rater.recent("v") == ([2], [pytest.approx(expected)])


def test_a_batch_learns_what_its_ratings_one_by_one_would() -> None:
    stream = _stream(80)
    one, many = NeighbourRater(pool=64), NeighbourRater(pool=64)  # repacked along the way
    singly = []
    for user, item, y in stream:
        singly.append(one.predict_one(user, item))
        one.learn_one(user, item, y)
    batched = []
    for at in range(0, len(stream), 37):
        users, items, ys = zip(*stream[at : at + 37], strict=True)
        batched += many.learn_many(users, items, ys).tolist()
    np.testing.assert_allclose(batched, singly, rtol=1e-12)
    np.testing.assert_array_equal(one.user_bias, many.user_bias)


def test_the_mix_stays_a_weight_between_the_two() -> None:
    mix = RatingMix(lr=1.0)
    mix.learn(1.0, 5.0, 100.0)  # an absurd target: the weight is clipped, not thrown away
    assert mix.weight == 1.0
    mix.learn(1.0, 5.0, -100.0)
    assert mix.weight == 0.0


def test_the_model_blends_only_when_asked() -> None:
    u, i = {"user=1": 1.0}, {"item=7": 1.0}
    on, off = RecModel(Settings(n_factors=4)), RecModel(Settings(n_factors=4, rating_neighbours=0))
    for model in (on, off):
        model.learn_one(u, i, "rating", 5.0, [])
    assert on.neighbours.ratings == 1 and off.neighbours.ratings == 0
    fm = off.predict_rating(u, i)  # the same FM (same seed), without the neighbourhood
    assert on.predict_rating(u, i) == pytest.approx(
        on.range.clip(on.rating_mix.predict(fm, on.neighbours.predict_one("user=1", 0)))
    )


def test_predictions_are_the_formula_over_a_plain_count_of_co_ratings() -> None:
    """The compiled rater (its pool grown and repacked, items forgotten as expiry does, then
    renumbered as a compaction does) against the module's formula computed in Python dicts:
    baselines by SGD, residual products and co-rating counts over pairs within a user's last
    ``last`` ratings (a rating again replacing the old one), the shrunk cosine, the
    similarity-weighted mean of the user's residuals."""
    from collections import Counter

    last, shrink, lr, l2, prior = 10, 3.0, 0.02, 0.05, 3.0
    rater = NeighbourRater(last=last, shrink=shrink, lr=lr, l2=l2, prior=prior, pool=32)
    rng = np.random.default_rng(5)
    sums = [0, 0.0]  # ratings, their total
    user_bias: Counter = Counter()
    item_bias: Counter = Counter()
    energy: Counter = Counter()
    count: Counter = Counter()
    product: Counter = Counter()
    recent: dict[int, list[tuple[int, float]]] = {}
    gone: set[int] = set()

    def learn(ratings: int) -> None:
        for _ in range(ratings):
            user, item = int(rng.integers(0, 80)), int(rng.integers(0, 50))
            y = float(np.clip(round(3 + (user % 3 - 1) * (item % 3 - 1) + rng.normal()), 1, 5))
            base = (sums[1] / sums[0] if sums[0] else prior) + user_bias[user] + item_bias[item]
            num = den = 0.0
            for other, residual in recent.get(user, []):
                norm = np.sqrt(energy[item] * energy[other])
                if (item, other) in count and norm > 0 and other not in gone:
                    c = count[item, other]
                    s = product[item, other] / norm * c / (c + shrink)
                    if s > 0:
                        num, den = num + s * residual, den + s
            expected = base + num / den if den > 0 else base
            (got,) = rater.learn_many([user], [item], [y])
            assert got == pytest.approx(expected, abs=1e-4)
            residual = y - base
            for other, e in recent.get(user, []):
                if other != item and other not in gone:
                    for pair in ((item, other), (other, item)):
                        count[pair] += 1
                        product[pair] += residual * e
            gone.discard(item)
            mine = [(o, e) for o, e in recent.get(user, []) if o != item]
            recent[user] = [*mine[-(last - 1) :], (item, residual)]
            energy[item] += residual * residual
            sums[0], sums[1] = sums[0] + 1, sums[1] + y
            user_bias[user] += lr * (residual - l2 * user_bias[user])
            item_bias[item] += lr * (residual - l2 * item_bias[item])

    learn(2_000)
    assert len(rater.neighbour) > 32  # the pool grew on the way
    for item in rng.choice(50, 5, replace=False).tolist():  # expired: its row and bias go
        rater.forget_item(item)  # (its energy stays: the pairs other rows hold with it)
        for pair in [pair for pair in count if pair[0] == item]:
            del count[pair], product[pair]
        item_bias[item] = 0.0
        gone.add(item)
    learn(500)
    dropped = rng.random(50) < 0.3  # a compaction: ids dropped, the others renumbered
    mapping = np.where(dropped, -1, np.cumsum(~dropped) - 1)
    rater.renumber_items(mapping)
    m = mapping.tolist()

    def moved(counter: Counter) -> Counter:
        return Counter({m[i]: v for i, v in counter.items() if m[i] >= 0})

    count = Counter({(m[a], m[b]): c for (a, b), c in count.items() if m[a] >= 0 <= m[b]})
    product = Counter({(m[a], m[b]): p for (a, b), p in product.items() if m[a] >= 0 <= m[b]})
    energy, item_bias = moved(energy), moved(item_bias)
    gone = {m[i] for i in gone if m[i] >= 0}
    for user, ratings in recent.items():
        recent[user] = [(m[i], e) for i, e in ratings if m[i] >= 0]
    learn(1_500)  # ids past the kept ones are new items now
