"""Fresh items: the newest items of the catalogue, the newest first."""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence

import numpy as np

from streamer.strategies.base import Observation, Query, Scored


class FreshItems:
    """Items that arrived while the stream ran (not in the catalogue loaded before the first
    interaction), at most ``max_age`` interactions ago, chosen fewer than ``cold`` times yet
    (positives, not distinct users: other workers' positives come without their user): the
    newest ``window`` of them (``add`` when an item first appears). Exposure for what
    the other sources cannot know yet.

    >>> f = FreshItems(window=3, cold=2)
    >>> f.add(0)  # loaded before any interaction: not fresh
    >>> f.learn(Observation("u", 0, "", []))
    >>> for item in (1, 2, 3, 4):
    ...     f.add(item)
    >>> f.learn(Observation("u", 3, "", [])); f.learn(Observation("v", 3, "", []))
    >>> f.candidates([Query("u", "", [], exclude={4})], k=5)
    [[(2, 0.3333)]]
    """

    name = "fresh"
    repeats = False

    def __init__(self, window: int = 200, cold: int = 3, max_age: int = 5000) -> None:
        self._newest: deque[tuple[int, int]] = deque(maxlen=window)  # (item, clock at arrival)
        self._chosen: dict[int, int] = {}
        self.cold, self.max_age = cold, max_age
        self._clock = 0  # interactions learned

    def add(self, item: int) -> None:
        if not self._clock:
            return  # the catalogue as loaded before the stream: nothing is new yet
        self._newest.append((item, self._clock))
        self._chosen[item] = 0
        if len(self._chosen) > 2 * len(self._newest):  # forget the ones out of the window
            self._chosen = {i: self._chosen.get(i, 0) for i, _ in self._newest}

    def renumber(self, mapping: np.ndarray) -> None:
        """Item ids renumbered by ``mapping`` (old -> new, -1: dropped)."""
        m = mapping.tolist()
        self._newest = deque(((m[i], c) for i, c in self._newest if m[i] >= 0), self._newest.maxlen)
        self._chosen = {m[i]: n for i, n in self._chosen.items() if m[i] >= 0}

    def learn(self, observation: Observation) -> None:
        self._clock += 1
        if observation.item in self._chosen:
            self._chosen[observation.item] += 1

    def is_fresh(self, item: int) -> bool:
        """Whether ``item`` arrived while the stream ran, at most ``max_age`` interactions ago,
        and was chosen fewer than ``cold`` times yet."""
        if self._chosen.get(item, self.cold) >= self.cold:
            return False
        arrived = next((c for i, c in reversed(self._newest) if i == item), None)
        return arrived is not None and self._clock - arrived <= self.max_age

    def candidates(self, queries: Sequence[Query], k: int) -> list[Scored]:
        out: list[Scored] = []
        for query in queries:
            picked: Scored = []
            for rank, (item, arrived) in enumerate(reversed(self._newest)):
                if self._clock - arrived > self.max_age:
                    break  # the rest are older still
                if item not in query.exclude and self._chosen.get(item, 0) < self.cold:
                    picked.append((item, round(1.0 / (rank + 1), 4)))
                    if len(picked) == k:
                        break
            out.append(picked)
        return out
