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
from collections.abc import Sequence

import numpy as np

from streamer.jit import compiled

# RatingMix lived here: snapshots written before it moved name it in this module
from streamer.model.rating_mix import RatingMix  # noqa: F401
from streamer.rowpool import (
    EMPTY,
    block_for,
    grown,
    locate,
    move,
    moved_rows,
    prune,
    renumbered,
    repacked,
    trimmed,
)

N, PRODUCT = 0, 1  # a pair's columns: co-ratings (what a prune keeps), sum of residual products


class NeighbourRater:
    """Ratings predicted from the user's own recent ratings of similar items.

    Items are small integers (the model's item slots); users any hashable key. A batch of
    ratings is predicted and learned in one compiled call (:meth:`learn_many`), each rating
    predicted just before it is learned, so a batch gives what its ratings one by one would.

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
        self.sums = np.zeros(2)  # ratings learned, their total
        # per user slot: bias, and the last ratings (item slots, residuals; the most recent last)
        self.slots: dict[object, int] = {}
        self._free: list[int] = []  # slots of forgotten users
        self.user_bias = np.zeros(64)
        self.recent_items = np.zeros((64, last), np.int64)
        self.recent_residuals = np.zeros((64, last))
        self.recent_length = np.zeros(64, np.int64)
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
    def ratings(self) -> int:
        return int(self.sums[0])

    @property
    def mean(self) -> float:
        return float(self.sums[1] / self.sums[0]) if self.sums[0] else self.prior

    def recent(self, user: object) -> tuple[list[int], list[float]] | None:
        """The user's last ratings (item slots, residuals), oldest first; None if unknown."""
        slot = self.slots.get(user)
        if slot is None:
            return None
        n = int(self.recent_length[slot])
        return self.recent_items[slot, :n].tolist(), self.recent_residuals[slot, :n].tolist()

    def baseline(self, user: object, item: int) -> float:
        """``mu + b_u + b_i``."""
        item_bias = self.item_bias[item] if item < len(self.item_bias) else 0.0
        slot = self.slots.get(user)
        user_bias = self.user_bias[slot] if slot is not None else 0.0
        return self.mean + float(user_bias) + float(item_bias)

    def predict_one(self, user: object, item: int) -> float:
        """The baseline, moved by the user's residuals on ``item``'s neighbours."""
        base = self.baseline(user, item)
        slot = self.slots.get(user)
        if slot is None or item >= len(self.size):
            return base
        n = self.recent_length[slot]
        return float(_moved(
            base, item, self.recent_items[slot, :n], self.recent_residuals[slot, :n],
            self.shrink, self.neighbour, self.pairs, self.start, self.size, self.energy,
            self.gone,
        ))  # fmt: skip

    def learn_one(self, user: object, item: int, rating: float) -> None:
        """Count ``item``'s pairs with the user's last ratings, then step the baseline."""
        self.learn_many([user], [item], [rating])

    def learn_many(
        self, users: Sequence[object], items: Sequence[int], ratings: Sequence[float]
    ) -> np.ndarray:
        """Each rating in order: predicted (:meth:`predict_one`), then learned
        (:meth:`learn_one`). Returns the predictions."""
        if not len(ratings):  # a batch of clicks only: nothing to allocate
            return np.zeros(0)
        slots = np.array([self._slot(user) for user in users], np.int64)
        item_slots = np.array(items, np.int64)
        self._reserve(int(item_slots.max()))
        values = np.array(ratings, np.float64)
        out = np.zeros(len(values))
        scratch = np.zeros(self.last, np.int64), np.zeros(self.last)
        first, failed_at, double = 0, -1, False
        while first < len(values):
            stop = _learn_many(
                first, first == failed_at, slots, item_slots, values, out,
                self.shrink, self.lr, self.l2, self.prior, 2 * self.max_neighbours,
                self.max_neighbours, self.sums, self.user_bias, self.recent_items,
                self.recent_residuals, self.recent_length, self.item_bias, self.energy,
                self.gone, self.neighbour, self.pairs, self.used, self.start, self.size,
                self.length, *scratch,
            )  # fmt: skip
            if stop < len(values):  # the pool is full: repack it (twice as large if that
                double = stop == failed_at  # was not enough for this rating), go on
                self.neighbour, self.pairs = repacked(
                    self.neighbour, self.pairs, self.used, self.start, self.size, double
                )
                failed_at = stop
            first = stop
        return out

    def forget(self, user: object) -> None:
        """Drop ``user``'s bias and recent ratings (an expired user)."""
        slot = self.slots.pop(user, None)
        if slot is not None:
            self.user_bias[slot] = 0.0
            self.recent_length[slot] = 0
            self._free.append(slot)

    def load_user(
        self, user: object, bias: float, items: np.ndarray, residuals: list[float]
    ) -> None:
        """Set ``user``'s bias and last ratings (item slots, residuals; the most recent last),
        e.g. handed over from another worker (``streamer.handover``)."""
        slot = self._slot(user)
        n = min(len(items), self.last)
        self.user_bias[slot] = bias
        self.recent_items[slot, :n] = items[len(items) - n :]
        self.recent_residuals[slot, :n] = residuals[len(residuals) - n :]
        self.recent_length[slot] = n

    def trim(self) -> None:
        """Drop the pool's free end (before a snapshot)."""
        self.neighbour, self.pairs = trimmed(self.neighbour, self.pairs, self.used)

    def forget_item(self, item: int) -> None:
        """Clear ``item``'s row and bias (an expired item): its block is dropped at the next
        repack; other rows' pairs with it no longer count until it is rated again. Its
        residual energy stays: those pairs' sums are over all its ratings, so they weigh what
        they weighed when it comes back (an energy restarted from its next rating would
        inflate their similarity)."""
        if item < len(self.size):
            self.size[item] = self.length[item] = 0
            self.item_bias[item] = 0.0
            self.gone[item] = True

    def renumber_items(self, mapping: np.ndarray) -> None:
        """Item slots renumbered by ``mapping`` (old -> new, -1: dropped, with its pairs and
        from every user's last ratings), e.g. after the model's slots were compacted."""
        self.neighbour, self.pairs, self.start, self.size, self.length, self.used = renumbered(
            mapping, self.neighbour, self.pairs, self.start, self.size, self.length
        )
        for name in ("item_bias", "energy", "gone"):
            setattr(self, name, moved_rows(mapping, getattr(self, name)))
        valid = np.arange(self.last)[None, :] < self.recent_length[:, None]
        new = np.where(valid, mapping[np.where(valid, self.recent_items, 0)], -1)
        keep = new >= 0
        order = np.argsort(~keep, axis=1, kind="stable")  # the kept ones first, in order
        self.recent_items = np.take_along_axis(np.where(keep, new, 0), order, 1)
        residuals = np.where(keep, self.recent_residuals, 0.0)
        self.recent_residuals = np.take_along_axis(residuals, order, 1)
        self.recent_length = keep.sum(axis=1)

    def _slot(self, user: object) -> int:
        slot = self.slots.get(user)
        if slot is None:
            slot = self._free.pop() if self._free else len(self.slots)
            if slot >= len(self.user_bias):
                n = 2 * len(self.user_bias)
                for name in ("user_bias", "recent_items", "recent_residuals", "recent_length"):
                    setattr(self, name, grown(getattr(self, name), n, 0))
            self.slots[user] = slot
        return slot

    def _reserve(self, item: int) -> None:
        if item >= len(self.size):
            n = max(2 * len(self.size), item + 1)
            for name in ("item_bias", "energy", "gone", "start", "size", "length"):
                setattr(self, name, grown(getattr(self, name), n, 0))


@compiled
def _moved(
    base: float,
    item: int,
    others: np.ndarray,
    residuals: np.ndarray,
    shrink: float,
    neighbour: np.ndarray,
    pairs: np.ndarray,
    start: np.ndarray,
    sizes: np.ndarray,
    energy: np.ndarray,
    gone: np.ndarray,
) -> float:
    """The prediction: ``base`` moved by ``sum s_ij e_j / sum s_ij``, the user's residuals
    ``e_j`` on ``item``'s neighbours ``j`` among ``others`` (none forgotten since they were
    rated) weighted by their positive similarities (``base`` where there are none)."""
    if len(others) == 0 or sizes[item] == 0:
        return base
    num = 0.0
    den = 0.0
    for at in range(len(others)):
        j = others[at]
        if gone[j]:
            continue
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
    return base + num / den if den > 0.0 else base


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


@compiled(nogil=True)  # learns beside the worker's Python (streamer.beside)
def _learn_many(
    first: int,
    resumed: bool,
    users: np.ndarray,
    items: np.ndarray,
    ratings: np.ndarray,
    out: np.ndarray,
    shrink: float,
    lr: float,
    l2: float,
    prior: float,
    limit: int,
    keep: int,
    sums: np.ndarray,
    user_bias: np.ndarray,
    recent_items: np.ndarray,
    recent_residuals: np.ndarray,
    recent_length: np.ndarray,
    item_bias: np.ndarray,
    energy: np.ndarray,
    gone: np.ndarray,
    neighbour: np.ndarray,
    pairs: np.ndarray,
    used: np.ndarray,
    start: np.ndarray,
    sizes: np.ndarray,
    length: np.ndarray,
    others: np.ndarray,
    residuals: np.ndarray,
) -> int:
    """:meth:`NeighbourRater.learn_many` from event ``first`` (its prediction already in
    ``out`` if ``resumed``). Returns the first event not learned: ``len(items)``, or one whose
    blocks would not fit in the pool (grow it and call again, resumed)."""
    last = recent_items.shape[1]
    for e in range(first, len(items)):
        u, i, rating = users[e], items[e], ratings[e]
        mean = sums[1] / sums[0] if sums[0] > 0.0 else prior
        base = mean + user_bias[u] + item_bias[i]
        n = recent_length[u]
        if not (resumed and e == first):
            out[e] = _moved(
                base, i, recent_items[u, :n], recent_residuals[u, :n], shrink,
                neighbour, pairs, start, sizes, energy, gone,
            )  # fmt: skip
        residual = rating - base
        m = 0  # pairs with the user's other recent items, none forgotten since
        for at in range(n):
            j = recent_items[u, at]
            if j != i and not gone[j]:
                others[m] = j
                residuals[m] = recent_residuals[u, at]
                m += 1
        if m > 0 and not _learn(
            i, residual, others[:m], residuals[:m], limit, keep,
            neighbour, pairs, used, start, sizes, length,
        ):  # fmt: skip
            return e
        gone[i] = False
        kept = 0  # rated again: the new rating replaces the old one
        for at in range(n):
            if recent_items[u, at] != i:
                recent_items[u, kept] = recent_items[u, at]
                recent_residuals[u, kept] = recent_residuals[u, at]
                kept += 1
        if kept == last:  # the oldest goes
            recent_items[u, : last - 1] = recent_items[u, 1:].copy()
            recent_residuals[u, : last - 1] = recent_residuals[u, 1:].copy()
            kept -= 1
        recent_items[u, kept] = i
        recent_residuals[u, kept] = residual
        recent_length[u] = kept + 1
        energy[i] += residual * residual
        sums[0] += 1.0
        sums[1] += rating
        user_bias[u] += lr * (residual - l2 * user_bias[u])
        item_bias[i] += lr * (residual - l2 * item_bias[i])
    return len(items)
