"""Item-to-item neighbourhood rating, learned per rating: Koren's kNN on baseline residuals.

    r_ui ~ b_ui + sum_j s_ij e_uj / sum_j s_ij     over the user's last ``last`` ratings j, s_ij > 0
    b_ui = mu + b_u + b_i                           (running mean; biases by SGD)
    e_uj = r_uj - b_uj                              (the residual when j was rated)
    s_ij = sum_v e_vi e_vj / sqrt(E_i E_j) * n_ij / (n_ij + shrink)

``sum_v e_vi e_vj`` and ``n_ij`` are summed over the users v who rated i and j within ``last``
ratings of each other, ``E_i = sum_v e_vi^2`` over all of i's ratings: a cosine of residuals,
shrunk towards 0 where few users rated both. Only pairs within a user's last ``last`` ratings
are counted, so an event costs ``O(last)`` whatever the user's history; each item keeps the
``max_neighbours`` neighbours with the most co-ratings (a row pool, :mod:`streamer.rowpool`).

It errs differently from the factorization machine (local, explicit neighbours against global
latent factors), so the two blended (:class:`RatingMix`) are better than either: on MovieLens
the FM alone is RMSE 0.944, this rater alone 0.98, the mix 0.934 (docs/evaluation.md).
"""

from __future__ import annotations

import math

import numpy as np

from streamer.jit import compiled
from streamer.rowpool import EMPTY, block_for, grown, locate, move, prune, repacked, trimmed

N, PRODUCT = 0, 1  # a pair's columns: co-ratings (what a prune keeps), sum of residual products


class NeighbourRater:
    """Ratings predicted from the user's own recent ratings of similar items.

    Items are small integers (the model's item slots); users any hashable key.

    Examples
    --------
    >>> r = NeighbourRater(last=10, shrink=0.0, prior=3.0)
    >>> for user in range(20):  # items 1 and 2 are liked or disliked together
    ...     y = 5.0 if user % 2 else 1.0
    ...     r.learn_one(user, 1, y); r.learn_one(user, 2, y); r.learn_one(user, 3, 3.0)
    >>> r.learn_one("fan", 1, 5.0)
    >>> r.learn_one("hater", 1, 1.0)
    >>> r.predict_one("fan", 2) > 4.0, r.predict_one("hater", 2) < 2.0
    (True, True)
    >>> round(r.predict_one("new", 2), 2) == round(r.baseline("new", 2), 2)  # nothing to go on
    True
    """

    def __init__(
        self,
        last: int = 50,
        shrink: float = 100.0,
        lr: float = 0.01,
        l2: float = 0.02,
        max_neighbours: int = 300,
        prior: float = 3.5,
        pool: int = 1 << 16,
    ) -> None:
        self.last, self.shrink, self.lr, self.l2 = last, shrink, lr, l2
        self.max_neighbours = max_neighbours
        self.prior = prior
        self.ratings = 0
        self.total = 0.0
        self.user_bias: dict[object, float] = {}
        # each user's last ratings: item slots and residuals, the most recent last
        self.recent: dict[object, tuple[list[int], list[float]]] = {}
        self.item_bias = np.zeros(1024)
        self.energy = np.zeros(1024)  # E_i
        self.gone = np.zeros(1024, np.bool_)  # forgotten (expired) since last rated
        self.neighbour = np.full(pool, EMPTY, np.int32)
        self.pairs = np.zeros((pool, 2), np.float32)
        self.used = np.zeros(1, np.int64)
        self.start = np.zeros(1024, np.int64)
        self.size = np.zeros(1024, np.int64)
        self.length = np.zeros(1024, np.int64)

    @property
    def mean(self) -> float:
        return self.total / self.ratings if self.ratings else self.prior

    def baseline(self, user: object, item: int) -> float:
        """``mu + b_u + b_i``."""
        item_bias = self.item_bias[item] if item < len(self.item_bias) else 0.0
        return self.mean + self.user_bias.get(user, 0.0) + float(item_bias)

    def predict_one(self, user: object, item: int) -> float:
        """The baseline, moved by the user's residuals on ``item``'s neighbours."""
        guess = self.baseline(user, item)
        mine = self.recent.get(user)
        if mine is None or item >= len(self.size) or not self.size[item]:
            return guess
        items, residuals = mine
        moved = _weighted_residual(
            item, np.array(items, np.int64), np.array(residuals), self.shrink,
            self.neighbour, self.pairs, self.start, self.size, self.energy,
        )  # fmt: skip
        return guess if math.isnan(moved) else guess + moved

    def learn_one(self, user: object, item: int, rating: float) -> None:
        """Count ``item``'s pairs with the user's last ratings, then step the baseline."""
        self._reserve(item)
        residual = rating - self.baseline(user, item)
        items, residuals = self.recent.setdefault(user, ([], []))
        if item in items:  # rated again: the new rating replaces the old one
            at = items.index(item)
            del items[at], residuals[at]
        self.gone[item] = False
        others, values = np.array(items, np.int64), np.array(residuals, np.float64)
        live = ~self.gone[others]  # no pairs with items forgotten since the user rated them
        others, values = others[live], values[live]
        if len(others):
            limit, double = 2 * self.max_neighbours, False
            while not _learn(
                item, residual, others, values, limit, self.max_neighbours,
                self.neighbour, self.pairs, self.used, self.start, self.size, self.length,
            ):  # fmt: skip
                self.neighbour, self.pairs = repacked(  # the pool is full: repack it (twice
                    self.neighbour, self.pairs, self.used, self.start, self.size, double
                )  # as large if that was not enough), go on
                double = True
        self.energy[item] += residual * residual
        items.append(item)
        residuals.append(residual)
        if len(items) > self.last:
            del items[0], residuals[0]
        self.ratings += 1
        self.total += rating
        bias = self.user_bias.get(user, 0.0)
        self.user_bias[user] = bias + self.lr * (residual - self.l2 * bias)
        self.item_bias[item] += self.lr * (residual - self.l2 * self.item_bias[item])

    def forget(self, user: object) -> None:
        """Drop ``user``'s bias and recent ratings (an expired user)."""
        self.user_bias.pop(user, None)
        self.recent.pop(user, None)

    def trim(self) -> None:
        """Drop the pool's free end (before a snapshot)."""
        self.neighbour, self.pairs = trimmed(self.neighbour, self.pairs, self.used)

    def forget_item(self, item: int) -> None:
        """Clear ``item``'s row and bias (an expired item): its block is dropped at the next
        repack; other rows' pairs with it no longer count (its residual energy is 0)."""
        if item < len(self.size):
            self.size[item] = self.length[item] = 0
            self.item_bias[item] = self.energy[item] = 0.0
            self.gone[item] = True

    def _reserve(self, item: int) -> None:
        if item >= len(self.size):
            n = max(2 * len(self.size), item + 1)
            for name in ("item_bias", "energy", "gone", "start", "size", "length"):
                setattr(self, name, grown(getattr(self, name), n, 0))


class RatingMix:
    """Two rating predictions blended by one weight learned online (least mean squares):
    ``a + w (b - a)``, ``w`` starting at ``start`` and kept in [0, 1].

    >>> mix = RatingMix()
    >>> for _ in range(2000):
    ...     _ = mix.learn(4.0, 3.0, 3.2)  # b is nearly right: w grows towards 0.8
    >>> round(mix.weight, 2)
    0.8
    """

    def __init__(self, start: float = 0.5, lr: float = 0.005) -> None:
        self.weight, self.lr = start, lr

    def predict(self, a: float, b: float) -> float:
        return a + self.weight * (b - a)

    def learn(self, a: float, b: float, y: float) -> float:
        """Predict, then step towards ``y``; returns the prediction made before the step."""
        guess = self.predict(a, b)
        self.weight = min(1.0, max(0.0, self.weight + self.lr * (y - guess) * (b - a)))
        return guess


@compiled
def _weighted_residual(
    item: int,
    others: np.ndarray,
    residuals: np.ndarray,
    shrink: float,
    neighbour: np.ndarray,
    pairs: np.ndarray,
    start: np.ndarray,
    sizes: np.ndarray,
    energy: np.ndarray,
) -> float:
    """``sum s_ij e_j / sum s_ij`` over the positive similarities (NaN if there are none)."""
    num = 0.0
    den = 0.0
    for at in range(len(others)):
        j = others[at]
        cell = locate(j, start[item], sizes[item], neighbour)
        if neighbour[cell] != j:
            continue
        n = pairs[cell, N]
        norm = math.sqrt(energy[item] * energy[j])
        if norm <= 0.0:
            continue
        s = pairs[cell, PRODUCT] / norm * n / (n + shrink)
        if s > 0.0:
            num += s * residuals[at]
            den += s
    return num / den if den > 0.0 else math.nan


@compiled
def _add(
    row: int,
    other: int,
    product: float,
    neighbour: np.ndarray,
    pairs: np.ndarray,
    start: np.ndarray,
    sizes: np.ndarray,
    length: np.ndarray,
) -> None:
    cell = locate(other, start[row], sizes[row], neighbour)
    if neighbour[cell] == EMPTY:
        neighbour[cell] = other
        pairs[cell] = 0.0
        length[row] += 1
    pairs[cell, N] += 1.0
    pairs[cell, PRODUCT] += product


@compiled
def _learn(
    item: int,
    residual: float,
    others: np.ndarray,
    residuals: np.ndarray,
    limit: int,
    keep: int,
    neighbour: np.ndarray,
    pairs: np.ndarray,
    used: np.ndarray,
    start: np.ndarray,
    sizes: np.ndarray,
    length: np.ndarray,
) -> bool:
    """One co-rating of ``item`` with each of ``others`` (distinct, without ``item``), both
    ways. False when the blocks it needs do not fit in the pool (grow it, call again)."""
    if length[item] >= limit:
        prune(item, keep, neighbour, pairs, start, sizes, length)
    for other in others:
        if length[other] >= limit:
            prune(other, keep, neighbour, pairs, start, sizes, length)
    need = 0
    for other in others:
        size = block_for(length[other] + 1)
        if size > sizes[other]:
            need += size
    own = block_for(length[item] + len(others))
    if own > sizes[item]:
        need += own
    if used[0] + need > len(neighbour):
        return False
    if own > sizes[item]:
        move(item, own, neighbour, pairs, used, start, sizes)
    for at in range(len(others)):
        other = others[at]
        product = residual * residuals[at]
        _add(item, other, product, neighbour, pairs, start, sizes, length)
        size = block_for(length[other] + 1)
        if size > sizes[other]:
            move(other, size, neighbour, pairs, used, start, sizes)
        _add(other, item, product, neighbour, pairs, start, sizes, length)
    return True
