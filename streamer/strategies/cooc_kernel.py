"""Compiled co-occurrence counts for item-to-item kNN: learn a batch of events, score a batch of
users, in one call each, for several windows at once (a pair's count within the user's last
``w`` items, for each ``w``: one hash lookup per pair, not one per window).

Each item's row is a small open-addressing hash table (neighbour id -> count per window) in a
shared pool (``streamer.rowpool``): the table is memory-bound, and one hash table over all pairs
was slower than Python's dicts. A row of ``limit`` neighbours is pruned to its ``keep`` largest
counts in the widest window.

The arrays live in :class:`Table`; the functions below take them as arguments (numba compiles
functions, not methods).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from streamer.jit import compiled
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


class Table:
    """The arrays of a co-occurrence table, grown on demand from Python.

    Examples
    --------
    >>> t = Table(windows=[2, 1])  # pairs within a user's last 2 items, and last 1
    >>> items, before = np.array([1, 2, 3, 3]), np.array([1, 1, 2, 1, 2])
    >>> t.learn(items, np.array([0, 0, 1, 3, 5]), before, limit=10, keep=5)
    >>> ids, scores, found = t.score(np.array([0, 1]), np.array([1]), np.array([0, 0]),
    ...                              np.array([], np.int64), k=5)
    >>> ids[0, 0, : found[0, 0]].tolist(), scores[0, 0, : found[0, 0]].round(3).tolist()
    ([3, 2], [1.414, 1.0])
    >>> ids[1, 0, : found[1, 0]].tolist()  # 3 came right after 1 once only when 2 was not between
    [2]
    """

    def __init__(self, windows: Sequence[int] = (50,), items: int = 1024, pool: int = 1 << 16):
        if sorted(windows, reverse=True) != list(windows) or min(windows) < 1:
            raise ValueError(f"windows {windows}: expected positive sizes, widest first")
        self.windows = np.array(windows, np.int64)
        # 12 bytes a cell for two windows (not 24): the table is memory-bound
        self.neighbour = np.full(pool, EMPTY, np.int32)
        self.count = np.zeros((pool, len(windows)), np.float32)  # exact up to 2**24
        self.used = np.zeros(1, np.int64)  # the pool's high-water mark
        self.start = np.zeros(items, np.int64)  # each row's block
        self.size = np.zeros(items, np.int64)  # its block's size (0: no block yet)
        self.length = np.zeros(items, np.int64)  # neighbours in the row
        self.positives = np.zeros(items, np.float64)
        self.norm = np.zeros(items, np.float64)  # 1 / sqrt(positives)
        self.scores = np.zeros((items, len(windows)), np.float64)  # scratch, zero between calls
        self.mark = np.zeros(items, np.int8)  # scratch, zero between calls

    def _reserve_items(self, item: int) -> None:
        if item >= len(self.size):
            n = max(2 * len(self.size), item + 1)
            for name in ("start", "size", "length", "positives", "norm", "scores", "mark"):
                setattr(self, name, grown(getattr(self, name), n, 0))

    def learn(
        self, items: np.ndarray, starts: np.ndarray, before: np.ndarray, limit: int, keep: int
    ) -> None:
        """A positive of ``items[e]`` after the items ``before[starts[e]:starts[e + 1]]`` (the
        most recent last, at most the widest window), for each ``e`` in order; rows of
        ``limit`` neighbours are pruned to ``keep``."""
        self._reserve_items(max(int(items.max(initial=0)), int(before.max(initial=0))))
        done, stalled = 0, -1
        while done < len(items):
            done = learn(
                done, items, starts, before, limit, keep, self.windows, self.neighbour, self.count,
                self.used, self.start, self.size, self.length, self.positives, self.norm,
                self.mark,
            )  # fmt: skip
            if done < len(items):  # the pool is full: repack it (twice as large if that was
                self.neighbour, self.count = repacked(  # not enough for this event), go on
                    self.neighbour, self.count, self.used, self.start, self.size, done == stalled
                )
                stalled = done

    def trim(self) -> None:
        """Drop the pool's free end (before a snapshot)."""
        self.neighbour, self.count = trimmed(self.neighbour, self.count, self.used)

    def forget(self, item: int) -> None:
        """Clear ``item``'s row, and its norm (pairs with it in other rows then score 0, and
        it pairs with nothing) until it is chosen again. Its count of positives stays: the
        pairs other rows still hold with it are counted over all of them, so they weigh what
        they weighed when it comes back (a count restarted at 1 would give them a "cosine"
        of up to sqrt of its old count)."""
        if item < len(self.size):
            self.size[item] = self.length[item] = 0
            self.norm[item] = 0.0

    def renumber(self, mapping: np.ndarray) -> None:
        """Item ids renumbered by ``mapping`` (old -> new, -1: dropped with its pairs)."""
        self.neighbour, self.count, self.start, self.size, self.length, self.used = renumbered(
            mapping, self.neighbour, self.count, self.start, self.size, self.length
        )
        self.positives = moved_rows(mapping, self.positives)
        self.norm = moved_rows(mapping, self.norm)

    def row_length(self, item: int) -> int:
        return int(self.length[item]) if item < len(self.length) else 0

    def score(
        self,
        starts: np.ndarray,
        last: np.ndarray,
        exclude_starts: np.ndarray,
        exclude: np.ndarray,
        k: int,
        weights: np.ndarray | None = None,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per query ``q`` (items ``last[starts[q]:starts[q + 1]]``, excluded items likewise in
        ``exclude``) and per window ``w``, the ``k`` best items by summed cosine (each of
        ``last`` weighted by ``weights``, 1 if None), ties by id:
        ``(ids[w, q], scores[w, q], found[w, q])``, ``found`` saying how many."""
        if weights is None:
            weights = np.ones(len(last))
        shape = (len(self.windows), len(starts) - 1)
        ids = np.zeros((*shape, k), np.int64)
        scores = np.zeros((*shape, k), np.float64)
        found = np.zeros(shape, np.int64)
        score(
            starts, last, weights, exclude_starts, exclude, k, self.neighbour, self.count,
            self.start, self.size, self.norm, self.scores, self.mark, ids, scores, found,
        )  # fmt: skip
        return ids, scores, found


@compiled
def _add(
    row: int,
    other: int,
    distance: int,
    windows: np.ndarray,
    neighbour: np.ndarray,
    count: np.ndarray,
    start: np.ndarray,
    sizes: np.ndarray,
    length: np.ndarray,
) -> None:
    """One more co-occurrence of ``other`` in ``row`` (whose block has room), ``distance``
    items apart: counted in each window at least that wide."""
    cell = locate(other, start[row], sizes[row], neighbour)
    if neighbour[cell] == EMPTY:
        neighbour[cell] = other
        count[cell] = 0.0
        length[row] += 1
    for w in range(len(windows)):
        if distance <= windows[w]:
            count[cell, w] += 1.0


@compiled(nogil=True)  # learns beside the worker's Python (streamer.beside)
def learn(
    first: int,
    items: np.ndarray,
    starts: np.ndarray,
    before: np.ndarray,
    limit: int,
    keep: int,
    windows: np.ndarray,
    neighbour: np.ndarray,
    count: np.ndarray,
    used: np.ndarray,
    start: np.ndarray,
    sizes: np.ndarray,
    length: np.ndarray,
    positives: np.ndarray,
    norm: np.ndarray,
    mark: np.ndarray,
) -> int:
    """Per event ``e`` from ``first``, one co-occurrence of ``items[e]`` with each distinct
    item of its ``before`` (itself skipped), both ways. Returns the first event not learned:
    ``len(items)``, or one whose blocks would not fit in the pool (grow it and call again)."""
    pool = len(neighbour)
    for e in range(first, len(items)):
        item = items[e]
        mine = before[starts[e] : starts[e + 1]]
        # prune first (as counting would), then make room: every block this event may need
        if length[item] >= limit:
            prune(item, keep, neighbour, count, start, sizes, length)
        need = 0
        new = 0
        for other in mine:
            if other == item or mark[other] or norm[other] == 0.0:
                continue  # itself, twice, or an item forgotten (expired) since it was chosen
            mark[other] = 1
            new += 1
            if length[other] >= limit:
                prune(other, keep, neighbour, count, start, sizes, length)
            size = block_for(length[other] + 1)
            if size > sizes[other]:
                need += size
        size = block_for(length[item] + new)
        if size > sizes[item]:
            need += size
        if used[0] + need > pool:
            for other in mine:
                mark[other] = 0
            return e
        if size > sizes[item]:
            move(item, size, neighbour, count, used, start, sizes)
        positives[item] += 1.0
        norm[item] = 1.0 / np.sqrt(positives[item])
        for at in range(len(mine)):
            other = mine[at]
            if mark[other] != 1:
                continue
            mark[other] = 0
            distance = len(mine) - at
            _add(item, other, distance, windows, neighbour, count, start, sizes, length)
            size = block_for(length[other] + 1)
            if size > sizes[other]:
                move(other, size, neighbour, count, used, start, sizes)
            _add(other, item, distance, windows, neighbour, count, start, sizes, length)
        if length[item] >= limit:
            prune(item, keep, neighbour, count, start, sizes, length)
    return len(items)


@compiled
def _top(
    candidates: np.ndarray,
    value: np.ndarray,
    k: int,
    ids: np.ndarray,
    scores: np.ndarray,
) -> int:
    """The ``k`` best ``candidates`` by ``value`` (ties: the lower id first) into ``ids`` and
    ``scores``, best first, by insertion into the sorted best so far; returns how many."""
    n = 0
    for j in candidates:
        v = value[j]
        if v <= 0.0:  # never together within this window
            continue
        if n == k and (v < scores[k - 1] or (v == scores[k - 1] and j > ids[k - 1])):
            continue
        r = min(n, k - 1)  # where it goes: after every better one
        while r > 0 and (scores[r - 1] < v or (scores[r - 1] == v and ids[r - 1] > j)):
            if r < k:
                scores[r], ids[r] = scores[r - 1], ids[r - 1]
            r -= 1
        scores[r], ids[r] = v, j
        n = min(n + 1, k)
    return n


@compiled
def score(
    starts: np.ndarray,
    last: np.ndarray,
    weights: np.ndarray,
    exclude_starts: np.ndarray,
    exclude: np.ndarray,
    k: int,
    neighbour: np.ndarray,
    count: np.ndarray,
    start: np.ndarray,
    sizes: np.ndarray,
    norm: np.ndarray,
    acc: np.ndarray,
    mark: np.ndarray,
    ids: np.ndarray,
    scores: np.ndarray,
    found: np.ndarray,
) -> None:
    """``sum over i in last[q] of weight_i count_w(i, j) / sqrt(n_i n_j)``: the best ``k`` per query
    and window ``w``, ties by id; ``acc`` and ``mark`` are zero before and after."""
    rows = len(sizes)
    for q in range(len(starts) - 1):
        for e in exclude[exclude_starts[q] : exclude_starts[q + 1]]:
            if e < rows:
                mark[e] = 2
        size = 0
        for i in last[starts[q] : starts[q + 1]]:
            if i < rows:
                size += sizes[i]
        touched = np.empty(size, np.int64)
        n = 0
        for at in range(starts[q], starts[q + 1]):
            i = last[at]
            if i >= rows:
                continue
            mine = norm[i] * weights[at]
            for c in range(start[i], start[i] + sizes[i]):
                j = neighbour[c]
                if j == EMPTY or mark[j] == 2:
                    continue
                if mark[j] == 0:
                    mark[j] = 1
                    touched[n] = j
                    n += 1
                weight = mine * norm[j]
                for w in range(acc.shape[1]):
                    acc[j, w] += count[c, w] * weight
        for w in range(acc.shape[1]):
            found[w, q] = _top(touched[:n], acc[:, w], k, ids[w, q], scores[w, q])
        for j in touched[:n]:
            acc[j] = 0.0
            mark[j] = 0
        for e in exclude[exclude_starts[q] : exclude_starts[q + 1]]:
            if e < rows:
                mark[e] = 0
