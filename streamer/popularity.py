"""Popular items overall and per context, with exponential forgetting."""

from __future__ import annotations

import bisect
import heapq
from collections import defaultdict
from collections.abc import Collection, Hashable, Iterable, Mapping
from typing import TYPE_CHECKING, Generic, TypeVar

if TYPE_CHECKING:  # the read helper imports this module: nothing heavy at run time
    import numpy as np

Item = TypeVar("Item", bound=Hashable)


def context_key(context: Mapping[str, str], keys: Iterable[str]) -> str:
    """The popularity bucket of a context: the chosen keys it has, sorted.

    >>> context_key({"device": "tv", "hour": "9", "daypart": "morning"}, ["device", "daypart"])
    'daypart=morning|device=tv'
    >>> context_key({"hour": "9"}, ["device"])
    ''
    """
    return "|".join([f"{k}={context[k]}" for k in sorted(keys) if k in context])


class Popularity(Generic[Item]):
    """Decayed interaction counts per context bucket ('' is everyone, everywhere).

    Counts halve every ``half_life`` interactions, so the lists follow what is popular now.

    Examples
    --------
    >>> p = Popularity(half_life=1000)
    >>> for item in (1, 1, 2):
    ...     p.add(item, "device=tv")
    >>> p.add(3, "device=phone")
    >>> p.top("device=tv", 5), p.top("", 1), p.top("device=tv", 5, exclude={1})
    ([(1, 2.0), (2, 1.0)], [(1, 2.0)], [(2, 1.0)])
    >>> p.top("device=radio", 1)  # a bucket never seen falls back to everyone's
    [(1, 2.0)]
    >>> q = Popularity(leaders=1)  # past the leaders, what the user had and what expired left out
    >>> for item, n in ((1, 4), (2, 3), (3, 2), (4, 1)):
    ...     for _ in range(n):
    ...         q.add(item, "")
    >>> q.top("", 2, exclude={1}, gone={2, 3})
    [(4, 1.0)]
    >>> q.top("", 2, gone={1, 2})
    [(3, 2.0), (4, 1.0)]
    """

    def __init__(self, half_life: int = 20_000, leaders: int = 256) -> None:
        self.half_life = half_life
        self._counts: dict[str, defaultdict[Item, float]] = {}
        # Per bucket, its ``leaders`` largest counts in order, kept exact as counts grow: an
        # item's count moves only by its own increments, so only it can enter or climb.
        self._leaders: dict[str, list[Item]] = defaultdict(list)
        self._rank: dict[str, dict[Item, int]] = defaultdict(dict)  # where each leader is
        self.leaders = leaders
        self._since_halving = 0

    def add(self, item: Item, key: str, weight: float = 1.0) -> None:
        self._bump("", item, weight)
        if key:
            self._bump(key, item, weight)
        self._since_halving += 1
        if self._since_halving >= self.half_life:
            self._halve()

    def _bump(self, key: str, item: Item, weight: float) -> None:
        counts = self._counts.get(key)
        if counts is None:
            counts = self._counts[key] = defaultdict(float)
        count = counts[item] = counts[item] + weight
        leaders, rank = self._leaders[key], self._rank[key]
        at = rank.get(item)
        if at is None:
            if len(leaders) >= self.leaders and count <= counts[leaders[-1]]:
                return
            at = len(leaders)
            leaders.append(item)
        elif not at or counts[leaders[at - 1]] >= count:  # in place (most bumps)
            return
        # climb past the smaller counts (the leaders are in order: found by bisection, the
        # ones passed moved down by one; bumps pass ~10 of them on MovieLens)
        to = bisect.bisect_right(leaders, -count, 0, at, key=lambda i: -counts[i])
        if to < at:
            leaders[to + 1 : at + 1] = leaders[to:at]
            leaders[to] = item
            for place in range(to + 1, at + 1):
                rank[leaders[place]] = place
        rank[item] = to
        if len(leaders) > self.leaders:
            del rank[leaders.pop()]

    def counts(self, key: str = "") -> dict[Item, float]:
        """The decayed counts of bucket ``key`` (read-only view)."""
        return self._counts.get(key) or {}

    def keys(self) -> list[str]:
        return list(self._counts)

    def top(
        self, key: str, k: int, exclude: Collection[Item] = (), gone: Collection[Item] = ()
    ) -> list[tuple[Item, float]]:
        """The ``k`` most popular (item, count) of bucket ``key``, or of everyone's, none of
        ``exclude`` (a user's items) nor of ``gone`` (expired items), checked apart: no union
        is made."""
        if not self._counts.get(key):
            key = ""
        counts: Mapping[Item, float] = self._counts.get(key) or {}
        leaders = self._leaders.get(key, [])
        out = []
        for item in leaders:
            if item not in exclude and item not in gone:
                out.append((item, counts[item]))
                if len(out) == k:
                    return out
        if len(leaders) == len(counts):  # the leaders are the whole bucket
            return out
        # past the leaders: the largest counts, twice as many each time those left out by
        # ``gone`` (at most all the expired items: not worth sorting every count for) crowd
        # them (``exclude`` is at most its own size of them)
        ask = k + len(exclude)
        while True:
            best = heapq.nlargest(ask, counts.items(), key=lambda kv: kv[1])
            out = [(i, count) for i, count in best if i not in exclude and i not in gone][:k]
            if len(out) == k or ask >= len(counts):
                return out
            ask *= 2

    def renumber(self: Popularity[int], mapping: np.ndarray) -> None:
        """Item ids renumbered by ``mapping`` (old -> new, -1: dropped with its counts).

        >>> import numpy as np
        >>> p: Popularity[int] = Popularity()
        >>> for item in (0, 2, 2, 1):
        ...     p.add(item, "")
        >>> p.renumber(np.array([0, -1, 1])); p.top("", 5)
        [(1, 2.0), (0, 1.0)]
        """
        m = mapping.tolist()
        for key, counts in self._counts.items():
            kept = {m[i]: c for i, c in counts.items() if m[i] >= 0}
            self._counts[key] = defaultdict(float, kept)
            self._leaders[key] = [m[i] for i in self._leaders[key] if m[i] >= 0]
            self._fill(key)

    def _halve(self) -> None:
        self._since_halving = 0
        for key, counts in self._counts.items():
            for item in list(counts):
                counts[item] *= 0.5
                if counts[item] < 0.01:
                    del counts[item]
            self._leaders[key] = [i for i in self._leaders[key] if i in counts]
            self._fill(key)

    def _fill(self, key: str) -> None:
        """Bucket ``key``'s leaders topped up from the counts outside them, after some were
        dropped: every item outside has a count no larger than theirs, so the largest of those
        follow them, and the leaders are again the bucket's exact top (a new item that came in
        after a shortened list would otherwise pass items with larger counts)."""
        leaders, counts = self._leaders[key], self._counts[key]
        room = self.leaders - len(leaders)
        if room > 0 and len(counts) > len(leaders):
            inside = set(leaders)
            outside = ((i, c) for i, c in counts.items() if i not in inside)
            leaders += [i for i, _ in heapq.nlargest(room, outside, key=lambda kv: kv[1])]
        self._rank[key] = {item: at for at, item in enumerate(leaders)}
