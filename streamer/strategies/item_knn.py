"""Item-to-item kNN: co-occurrence cosine learned per event, scored over the user's last items."""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import numpy as np

from streamer.strategies.base import Observation, Query, Scored
from streamer.strategies.cooc_kernel import Table


class CoCounts:
    """Co-occurrence counts of items within users' last items, for several window sizes at
    once, learned per observation (in one compiled call per batch) and shared by the item-kNN
    strategies that read them: one learning pass, and one scoring pass per batch of queries
    for all windows. Each item keeps at most ``2 * max_neighbours`` neighbours (the largest
    counts in the widest window survive a prune): bounded memory."""

    def __init__(self, windows: Sequence[int] = (50,), max_neighbours: int = 300) -> None:
        self.windows = sorted(set(windows), reverse=True)
        self.max_neighbours = max_neighbours
        self.table = Table(self.windows)
        # observations not yet in the table: learned in one compiled call before the next read
        self._items: list[int] = []
        self._before: list[Sequence[int]] = []
        self._last_seen: Observation | None = None
        self._scored: tuple[object, int, int, float, tuple[np.ndarray, ...]] | None = None

    def learn(self, observation: Observation) -> None:
        """Count ``observation`` (once, however many strategies share these counts)."""
        if observation is self._last_seen:
            return
        self._last_seen = observation
        self._items.append(observation.item)
        self._before.append(observation.recent[-self.windows[0] :])
        self._scored = None

    def flush(self) -> None:
        """Learn the observations booked since the last read (one compiled call)."""
        if self._items:
            before, starts = _flat(self._before)
            items = np.array(self._items, np.int64)
            self.table.learn(items, starts, before, 2 * self.max_neighbours, self.max_neighbours)
            self._items, self._before = [], []

    def trim(self) -> None:
        """Drop the table's free pool (before a snapshot)."""
        self.flush()
        self.table.trim()

    def forget_item(self, item: int) -> None:
        """Clear ``item``'s row (an expired item): it is never proposed again (its norm is 0)
        until it is chosen again, and then weighs as before (:meth:`Table.forget`); its block
        is dropped at the next repack."""
        self.flush()
        self.table.forget(item)
        self._scored = None

    def renumber(self, mapping: np.ndarray) -> None:
        """Item ids renumbered by ``mapping`` (old -> new, -1: dropped), e.g. a compacted
        catalogue's (``Engine.compact``)."""
        self.flush()
        self.table.renumber(mapping)
        self._last_seen, self._scored = None, None

    def neighbours(self, item: int) -> int:
        """How many neighbours ``item`` has now (at most ``2 * max_neighbours``)."""
        self.flush()
        return self.table.row_length(item)

    def score(
        self, queries: Sequence[Query], last: int, k: int, decay: float = 1.0
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per window, query and rank: the best ``k`` items by summed cosine over each query's
        ``last`` distinct items, the most recent weighing 1 and each step back ``decay`` times
        the one after it (see :meth:`Table.score`); the same ``queries`` object asked again
        for another window is answered from the same pass."""
        cached = self._scored
        if cached is not None and cached[0] is queries and cached[1:4] == (last, k, decay):
            return cached[4]  # type: ignore[return-value]
        if decay == 1.0:
            recent = [list(dict.fromkeys(q.recent[-last:])) for q in queries]
            weights = None
        else:  # the most recent first
            recent = [list(dict.fromkeys(reversed(q.recent[-last:]))) for q in queries]
            steps = decay ** np.arange(max(map(len, recent), default=0))
            weights = np.concatenate([steps[: len(r)] for r in recent]) if recent else None
        result = self._score(recent, [q.excluded for q in queries], k, weights)
        self._scored = (queries, last, k, decay, result)
        return result

    def _score(
        self,
        last: Sequence[Sequence[int]],
        exclude: Sequence[np.ndarray],
        k: int,
        weights: np.ndarray | None = None,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        self.flush()
        flat_last, starts = _flat(last)
        exclude_starts = np.zeros(len(exclude) + 1, np.int64)
        np.cumsum([len(e) for e in exclude], out=exclude_starts[1:])
        flat_exclude = np.concatenate(exclude) if exclude else np.zeros(0, np.int64)
        return self.table.score(starts, flat_last, exclude_starts, flat_exclude, k, weights)

    def similar(self, items: Sequence[int], window: int, k: int) -> list[Scored]:
        """The ``k`` items most similar to each of ``items`` within ``window``."""
        none = np.zeros(0, np.int64)
        ids, scores, found = self._score([[i] for i in items], [none] * len(items), k)
        return _scored(ids, scores, found, self.windows.index(window))


class ItemKNN:
    """Items that co-occur in users' recent histories, by cosine of co-occurrence counts.

    Each positive of item ``j`` adds, for each of the user's last ``window`` items ``i``, one
    co-occurrence to the pair; ``sim(i, j) = c(i, j) / sqrt(n_i n_j)``. A user's candidates are
    ``sum over the last `last` items i of decay^(steps back from the latest) sim(i, j)``
    (``decay`` 1: the plain item-kNN of the baselines). The counts are :class:`CoCounts`, its
    own or shared with item-kNN strategies of other windows.

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
        self,
        last: int = 5,
        window: int = 50,
        max_neighbours: int = 300,
        name: str = "",
        counts: CoCounts | None = None,
        decay: float = 1.0,
    ) -> None:
        if not 0.0 < decay <= 1.0:
            raise ValueError(f"decay {decay}: expected a weight in (0, 1]")
        self.last, self.window, self.decay = last, window, decay
        self.name = name or f"item-kNN (last {last})"
        self.counts = counts or CoCounts([window], max_neighbours)
        if window not in self.counts.windows:
            raise ValueError(f"window {window} is not one of the counts' {self.counts.windows}")
        self._at = self.counts.windows.index(window)

    def learn(self, observation: Observation) -> None:
        self.counts.learn(observation)

    def neighbours(self, item: int) -> int:
        """How many neighbours ``item`` has now."""
        return self.counts.neighbours(item)

    def similar(self, item: int, k: int) -> Scored:
        """The ``k`` items most similar to ``item``."""
        return self.counts.similar([item], self.window, k)[0]

    def similar_many(self, items: Sequence[int], k: int) -> list[Scored]:
        """:meth:`similar` of each of ``items``, in one pass."""
        return self.counts.similar(items, self.window, k)

    def candidates(self, queries: Sequence[Query], k: int) -> list[Scored]:
        return _scored(*self.counts.score(queries, self.last, k, self.decay), self._at)


def _scored(ids: np.ndarray, scores: np.ndarray, found: np.ndarray, window: int) -> list[Scored]:
    """One window's results of :meth:`Table.score` as scored lists."""
    return [
        list(zip(ids[window, q, :n].tolist(), scores[window, q, :n].tolist(), strict=True))
        for q, n in enumerate(found[window].tolist())
    ]


def _flat(groups: Sequence[Sequence[int]]) -> tuple[np.ndarray, np.ndarray]:
    """Groups of ids as one array and its offsets (``group q = flat[starts[q]:starts[q+1]]``)."""
    sizes = np.fromiter((len(g) for g in groups), np.int64, len(groups))
    starts = np.zeros(len(groups) + 1, np.int64)
    np.cumsum(sizes, out=starts[1:])
    return np.fromiter(itertools.chain.from_iterable(groups), np.int64, starts[-1]), starts
