"""Popular now, in the query's context bucket, topped up from everyone's counts."""

from __future__ import annotations

import itertools
from collections.abc import Collection, Sequence

import numpy as np

from streamer.popularity import Popularity
from streamer.strategies.base import Observation, Query, Scored


class PopularInContext:
    """Decayed counts per context bucket; never an empty list while any item was chosen.

    A bucket's own items come first; when the user's exclusions exhaust it (or it is new), the
    list is filled from the global counts (scores below the bucket's).

    >>> p = PopularInContext(global_only=False)
    >>> for item, bucket in [(1, "device=tv"), (1, "device=tv"), (2, "device=pc"), (3, "")]:
    ...     p.learn(Observation("u", item, bucket, []))
    >>> p.candidates([Query("v", "device=tv", [], exclude={1})], k=3)
    [[(2, 0.5), (3, 0.5)]]
    """

    repeats = False

    def __init__(
        self,
        global_only: bool = False,
        popularity: Popularity[int] | None = None,
        name: str = "",
    ) -> None:
        self.global_only = global_only
        self.name = name or ("popular" if global_only else "popular in context")
        self.popularity: Popularity[int] = popularity if popularity is not None else Popularity()
        self._owned = popularity is None  # a shared counter is fed by its owner

    def learn(self, observation: Observation) -> None:
        if self._owned:
            self.popularity.add(observation.item, observation.bucket)

    def renumber(self, mapping: np.ndarray) -> None:
        """Item ids renumbered by ``mapping`` (a shared counter is renumbered by its owner)."""
        if self._owned:
            self.popularity.renumber(mapping)

    def candidates(self, queries: Sequence[Query], k: int) -> list[Scored]:
        cache: dict[str, tuple[int, Scored]] = {}  # per bucket: (depth asked, ranked)
        out: list[Scored] = []
        for query in queries:
            bucket = "" if self.global_only else query.bucket
            asked, ranked = cache.get(bucket) or (0, [])
            if not asked:
                asked, ranked = cache[bucket] = (4 * k, self._ranked(bucket, 4 * k))
            picked = _first(ranked, k, query.exclude)
            depth = k + len(query.exclude)
            if len(picked) < k and asked < depth:  # exhausted by the exclusions: look deeper
                asked, ranked = cache[bucket] = (2 * depth, self._ranked(bucket, 2 * depth))
                picked = _first(ranked, k, query.exclude)
            out.append(picked)
        return out

    def _ranked(self, bucket: str, depth: int) -> Scored:
        """The bucket's top ``depth``, then everyone's (scaled under the bucket's last)."""
        own = self.popularity.top(bucket, depth) if self.popularity.counts(bucket) else []
        total = self.popularity.top("", depth)
        if not own:
            return total
        floor = own[-1][1]
        top = max(total[0][1], 1e-12) if total else 1.0
        known = {i for i, _ in own}
        rest = [(i, floor * 0.5 * s / top) for i, s in total if i not in known]
        return own + rest


def _first(ranked: Scored, k: int, exclude: Collection[int]) -> Scored:
    """The first ``k`` of ``ranked`` not in ``exclude``."""
    return list(itertools.islice(((i, s) for i, s in ranked if i not in exclude), k))
