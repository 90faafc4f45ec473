"""When users and items were last seen, and which have not been seen for a while (expiry).

Kafka's partitions interleave: a worker behind on one partition (a backlog) learns events
older than those it learned from the others a moment ago. Expiry therefore goes by the
stream's time (the latest event time seen), in the order of when keys were seen, not of when
their events arrived: a lagging partition's users, already past their time, expire at once
instead of piling up behind newer ones.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Mapping
from typing import Generic, TypeVar

Key = TypeVar("Key", str, int)


class LastSeen(Generic[Key]):
    """Keys by when they were last seen (stream time); :meth:`touch` returns, removed, those
    not seen for ``ttl`` before the stream's time, the least recently seen first.

    A heap of (time, order, key), stale entries (a key seen again since) skipped when they
    come up; rebuilt from the live keys when stale ones outnumber them, so memory stays
    proportional to the keys kept.

    Examples
    --------
    >>> seen: LastSeen[str] = LastSeen(ttl=10)
    >>> seen.touch("a", 0.0), seen.touch("b", 5.0), seen.touch("c", 12.0)
    ([], [], ['a'])
    >>> seen.touch("x", 30.0)  # b and c, in the order they were seen
    ['b', 'c']
    >>> seen.touch("late", 2.0), "late" in seen  # an event of a lagging partition
    ([], True)
    >>> seen.touch("x", 35.0), seen.get("x"), len(seen)
    (['late'], 35.0, 1)
    """

    def __init__(self, ttl: float) -> None:
        self.ttl = ttl
        self.clock = -math.inf  # the stream's time: the latest time seen
        self._when: dict[Key, float] = {}
        self._heap: list[tuple[float, int, Key]] = []
        self._order = 0  # ties: the earlier touch first

    def __len__(self) -> int:
        return len(self._when)

    def __contains__(self, key: object) -> bool:
        return key in self._when

    def get(self, key: Key) -> float | None:
        """When ``key`` was last seen, if it is kept."""
        return self._when.get(key)

    def touch(self, key: Key, ts: float) -> list[Key]:
        """``key`` seen at ``ts``; returns the keys that expire now (never ``key`` itself: seen at
        a time already past expiry, a lagging partition's, it goes at the next touch)."""
        previous = self._when.get(key)
        when = ts if previous is None else max(ts, previous)
        if when != previous:  # new, or seen later than before
            self._when[key] = when
            heapq.heappush(self._heap, (when, self._order, key))
            self._order += 1
        self.clock = max(self.clock, ts)
        if len(self._heap) > 2 * len(self._when) + 64:
            self._heap = [entry for entry in self._heap if self._live(entry)]
            heapq.heapify(self._heap)
        gone: list[Key] = []
        held = None  # ``key`` itself stays until the next touch: its event is being learned
        limit = self.clock - self.ttl
        while self._heap and self._heap[0][0] < limit:
            entry = heapq.heappop(self._heap)
            if not self._live(entry):
                continue
            if entry[2] == key:
                held = entry
                continue
            del self._when[entry[2]]
            gone.append(entry[2])
        if held is not None:
            heapq.heappush(self._heap, held)
        return gone

    def rename(self, names: Mapping[Key, Key]) -> None:
        """Each kept key renamed by ``names`` (one that is not in it is dropped).

        >>> seen: LastSeen[int] = LastSeen(ttl=10)
        >>> _ = seen.touch(5, 0.0), seen.touch(7, 1.0)
        >>> seen.rename({7: 1}); seen.get(1), 5 in seen, seen.touch(2, 20.0)
        (1.0, False, [1])
        """
        self._when = {names[k]: t for k, t in self._when.items() if k in names}
        self._heap = [(t, o, names[k]) for t, o, k in self._heap if k in names]
        heapq.heapify(self._heap)

    def _live(self, entry: tuple[float, int, Key]) -> bool:
        """Whether a heap entry is its key's last sighting (not stale: seen again since)."""
        return self._when.get(entry[2]) == entry[0]
