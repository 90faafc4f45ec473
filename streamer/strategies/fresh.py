"""Fresh items: the newest items of the catalogue, the newest first."""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence

from streamer.strategies.base import Observation, Query, Scored


class FreshItems:
    """The ``window`` most recently added items that fewer than ``cold`` users chose yet
    (``add`` when an item first appears): exposure for what the other sources cannot know.

    >>> f = FreshItems(window=3, cold=2)
    >>> for item in (1, 2, 3, 4):
    ...     f.add(item)
    >>> f.learn(Observation("u", 3, "", [])); f.learn(Observation("v", 3, "", []))
    >>> f.candidates([Query("u", "", [], exclude={4})], k=5)
    [[(2, 0.3333)]]
    """

    name = "fresh"
    repeats = False

    def __init__(self, window: int = 200, cold: int = 3) -> None:
        self._newest: deque[int] = deque(maxlen=window)
        self._chosen: dict[int, int] = {}
        self.cold = cold

    def add(self, item: int) -> None:
        self._newest.append(item)
        self._chosen[item] = 0
        if len(self._chosen) > 2 * len(self._newest):  # forget the ones out of the window
            self._chosen = {i: self._chosen.get(i, 0) for i in self._newest}

    def learn(self, observation: Observation) -> None:
        if observation.item in self._chosen:
            self._chosen[observation.item] += 1

    def candidates(self, queries: Sequence[Query], k: int) -> list[Scored]:
        out: list[Scored] = []
        for query in queries:
            picked: Scored = []
            for rank, item in enumerate(reversed(self._newest)):
                if item not in query.exclude and self._chosen.get(item, 0) < self.cold:
                    picked.append((item, round(1.0 / (rank + 1), 4)))
                    if len(picked) == k:
                        break
            out.append(picked)
        return out
