"""Encoded feature parts that outlive a batch: the item sides, by slot.

The compiled step reads an item side as ``rows[starts[s]:stops[s]]`` of one store, so a batch
names its items by slot and copies nothing. Writing a slot again (an item's metadata changed)
appends its new part; the old one is garbage, dropped when garbage outgrows the live entries.
"""

from __future__ import annotations

import numpy as np

from streamer.model.sgd_kernel import Parts


class PartStore:
    """Parts by slot, end to end in two growing arrays (rows, values).

    Examples
    --------
    >>> store = PartStore()
    >>> store.put(0, np.array([3, 4]), np.ones(2))
    >>> store.put(1, np.array([5]), np.ones(1))
    >>> store.put(0, np.array([7]), np.full(1, 2.0))  # slot 0 rewritten, shorter
    >>> parts = store.parts()
    >>> parts.rows_of(0).tolist(), parts.rows_of(1).tolist(), store.part(0)[1].tolist()
    ([7], [5], [2.0])
    >>> len(store), store.garbage
    (2, 2)
    """

    def __init__(self, capacity: int = 1024) -> None:
        self._rows = np.zeros(capacity, np.int64)
        self._xs = np.zeros(capacity)
        self._used = 0  # entries written, live or garbage
        self._starts = np.zeros(64, np.int64)
        self._stops = np.zeros(64, np.int64)
        self._slots = 0
        self._live = 0

    def __len__(self) -> int:
        return self._slots

    @property
    def garbage(self) -> int:
        """Entries of parts that were rewritten since the last compaction."""
        return self._used - self._live

    def put(self, slot: int, rows: np.ndarray, xs: np.ndarray) -> None:
        """Write the part of ``slot`` (a new slot is the next one, ``len(self)``)."""
        if slot > self._slots:
            raise IndexError(f"slot {slot} after {self._slots} slots")
        if slot == self._slots:
            if slot == len(self._starts):
                self._starts = np.resize(self._starts, 2 * slot)
                self._stops = np.resize(self._stops, 2 * slot)
            self._starts[slot] = self._stops[slot] = 0
            self._slots += 1
        self._live -= int(self._stops[slot] - self._starts[slot])
        self._stops[slot] = self._starts[slot]  # not live while the room is made
        n = len(rows)
        if self._used + n > len(self._rows):
            self._make_room(n)
        start = self._used
        self._rows[start : start + n] = rows
        self._xs[start : start + n] = xs
        self._starts[slot], self._stops[slot] = start, start + n
        self._used += n
        self._live += n

    def part(self, slot: int) -> tuple[np.ndarray, np.ndarray]:
        """The rows and values of ``slot`` (views: valid until the next ``put``)."""
        start, stop = self._starts[slot], self._stops[slot]
        return self._rows[start:stop], self._xs[start:stop]

    def parts(self) -> Parts:
        """Every slot's part, for the compiled step (views: valid until the next ``put``)."""
        n = self._slots
        return Parts(self._rows, self._xs, self._starts[:n], self._stops[:n])

    def _make_room(self, n: int) -> None:
        if self.garbage >= self._live:  # compact: live parts end to end, in slot order
            starts, stops = self._starts[: self._slots], self._stops[: self._slots]
            lengths = stops - starts
            stops[:] = np.cumsum(lengths)
            moved = starts - (stops - lengths)  # how far each part moves down
            keep = np.arange(self._live) + np.repeat(moved, lengths)
            self._rows[: self._live] = self._rows[keep]
            self._xs[: self._live] = self._xs[keep]
            starts -= moved
            self._used = self._live
        size = len(self._rows)
        while self._used + n > size:
            size *= 2
        if size > len(self._rows):
            self._rows = np.resize(self._rows, size)
            self._xs = np.resize(self._xs, size)

    def renumber(self, mapping: np.ndarray) -> None:
        """Slots renumbered by ``mapping`` (old -> new, -1: dropped; the kept slots in their
        order, new ones ``0..n-1``), the parts end to end again.

        >>> store = PartStore()
        >>> for slot, rows in enumerate(([3, 4], [5], [6])):
        ...     store.put(slot, np.array(rows), np.ones(len(rows)))
        >>> store.renumber(np.array([0, -1, 1]))
        >>> len(store), store.part(1)[0].tolist(), store.garbage
        (2, [6], 0)
        """
        kept = np.flatnonzero(mapping[: self._slots] >= 0)
        starts, stops = self._starts[kept], self._stops[kept]
        lengths = stops - starts
        total = int(lengths.sum())
        source = np.repeat(starts - (np.cumsum(lengths) - lengths), lengths) + np.arange(total)
        self._rows[:total], self._xs[:total] = self._rows[source], self._xs[source]
        self._stops[: len(kept)] = np.cumsum(lengths)
        self._starts[: len(kept)] = self._stops[: len(kept)] - lengths
        self._slots = len(kept)
        self._used = self._live = total
