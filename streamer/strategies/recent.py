"""Re-consumption: the user's own most recent items ("recently viewed")."""

from __future__ import annotations

from collections.abc import Sequence

from streamer.strategies.base import Observation, Query, Scored


class RecentItems:
    """The user's last distinct items, the most recent first (score ``1 / rank``).

    >>> RecentItems().candidates([Query("u", "", recent=[4, 7, 4, 9])], k=2)
    [[(9, 1.0), (4, 0.5)]]
    """

    name = "recent"
    repeats = True

    def learn(self, observation: Observation) -> None:
        """Nothing to learn: the user's history is the state."""

    def candidates(self, queries: Sequence[Query], k: int) -> list[Scored]:
        out: list[Scored] = []
        for query in queries:
            items: dict[int, float] = {}
            for item in reversed(query.recent):
                if item not in items and item not in query.exclude:
                    items[item] = 1.0 / (len(items) + 1)
                    if len(items) == k:
                        break
            out.append(list(items.items()))
        return out
