"""Item-to-item kNN: co-occurrence cosine learned per event, scored over the user's last items."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from operator import itemgetter

import numpy as np

from streamer.strategies.base import Observation, Query, Scored

#: How far (a share of a row's total count) scoring arrays may lag behind the counts.
STALE = 0.05


class _Row:
    """One item's co-occurrence counts: a dict to count in, and numpy arrays to score with,
    rebuilt when the counts moved by more than ``STALE`` of their total since the last build."""

    __slots__ = ("arrays", "counts", "pending", "total")

    def __init__(self) -> None:
        self.counts: dict[int, float] = {}
        self.total = self.pending = 0.0
        self.arrays: tuple[np.ndarray, np.ndarray] | None = None

    def prune(self, keep: int) -> None:
        """Keep the ``keep`` largest counts (bounded memory per item)."""
        # heapq.nlargest's answer (the first of equal counts kept), by one sort in C
        best = sorted(self.counts.items(), key=itemgetter(1), reverse=True)[:keep]
        self.counts = dict(best)
        self.arrays = None

    def scoring(self) -> tuple[np.ndarray, np.ndarray]:
        """(neighbour ids, counts) as arrays, at most ``STALE`` behind the counts."""
        if self.arrays is None or self.pending > STALE * self.total:
            n = len(self.counts)
            self.arrays = (
                np.fromiter(self.counts.keys(), np.int64, n),
                np.fromiter(self.counts.values(), np.float64, n),
            )
            self.pending = 0.0
        return self.arrays


class ItemKNN:
    """Items that co-occur in users' recent histories, by cosine of co-occurrence counts.

    Each positive of item ``j`` adds, for each of the user's last ``window`` items ``i``, one
    co-occurrence to the pair; ``sim(i, j) = c(i, j) / sqrt(n_i n_j)``. A user's candidates are
    ``sum over the last `last` items i of sim(i, j)``. Each item keeps at most
    ``2 * max_neighbours`` neighbours (the largest counts survive a prune): bounded memory.

    Examples
    --------
    >>> knn = ItemKNN(last=1)
    >>> for user, items in {"a": [1, 2], "b": [1, 2], "c": [1, 3]}.items():
    ...     for n, item in enumerate(items):
    ...         knn.learn(Observation(user, item, "", items[:n]))
    >>> [[i for i, _ in c] for c in knn.candidates([Query("d", "", recent=[1], exclude={1})], 5)]
    [[2, 3]]
    >>> [(i, round(s, 3)) for i, s in knn.similar(2, 3)]
    [(1, 0.816)]
    """

    repeats = False

    def __init__(
        self, last: int = 5, window: int = 50, max_neighbours: int = 300, name: str = ""
    ) -> None:
        self.last, self.window, self.max_neighbours = last, window, max_neighbours
        self.name = name or f"item-kNN (last {last})"
        self._rows: dict[int, _Row] = {}
        self._n = np.zeros(1024, np.float64)  # positives per item

    def learn(self, observation: Observation) -> None:
        item = observation.item
        if item >= len(self._n):
            grown = np.zeros(max(2 * len(self._n), item + 1))
            grown[: len(self._n)] = self._n
            self._n = grown
        self._n[item] += 1.0
        before = set(observation.recent[-self.window :] if self.window else ())
        before.discard(item)
        if not before:
            return
        mine = self._row(item)
        counts, rows = mine.counts, self._rows
        limit, keep = 2 * self.max_neighbours, self.max_neighbours
        for other in before:  # the hot loop: plain dict arithmetic, _row inlined
            counts[other] = counts.get(other, 0.0) + 1.0
            theirs = rows.get(other)
            if theirs is None:
                theirs = rows[other] = _Row()
            elif len(theirs.counts) >= limit:
                theirs.prune(keep)
            theirs.counts[item] = theirs.counts.get(item, 0.0) + 1.0
            theirs.total += 1.0
            theirs.pending += 1.0
        mine.total += len(before)
        mine.pending += len(before)
        if len(counts) >= limit:
            mine.prune(keep)

    def _row(self, item: int) -> _Row:
        row = self._rows.get(item)
        if row is None:
            row = self._rows[item] = _Row()
        elif len(row.counts) >= 2 * self.max_neighbours:
            row.prune(self.max_neighbours)
        return row

    def _sims(self, item: int) -> tuple[np.ndarray, np.ndarray] | None:
        row = self._rows.get(item)
        if row is None or not row.counts:
            return None
        ids, counts = row.scoring()
        norm = np.sqrt(self._n[item] * self._n[ids])
        return ids, counts / np.maximum(norm, 1e-12)

    def similar(self, item: int, k: int) -> Scored:
        """The ``k`` items most similar to ``item``."""
        found = self._sims(item)
        if found is None:
            return []
        ids, sims = found
        return _top(ids, sims, k, frozenset())

    def candidates(self, queries: Sequence[Query], k: int) -> list[Scored]:
        out: list[Scored] = []
        for query in queries:
            last = dict.fromkeys(query.recent[-self.last :])
            parts = [found for i in last if (found := self._sims(i)) is not None]
            if not parts:
                out.append([])
                continue
            ids = np.concatenate([p[0] for p in parts])
            sims = np.concatenate([p[1] for p in parts])
            unique, where = np.unique(ids, return_inverse=True)
            out.append(_top(unique, np.bincount(where, weights=sims), k, query.exclude))
        return out


def _top(ids: np.ndarray, scores: np.ndarray, k: int, exclude: Collection[int]) -> Scored:
    """The ``k`` best (id, score) pairs not in ``exclude``."""
    depth = min(len(ids), k + len(exclude))
    order = np.argsort(-scores, kind="stable") if depth >= len(ids) else None
    if order is None:
        part = np.argpartition(-scores, depth - 1)[:depth]
        order = part[np.argsort(-scores[part], kind="stable")]
    picked: Scored = []
    for n in order.tolist():
        item = int(ids[n])
        if item not in exclude:
            picked.append((item, float(scores[n])))
            if len(picked) == k:
                break
    return picked
