"""Accuracy by user group (the fairness audit): each model's prequential HitRate and RMSE over
the users of each group, where the log says who they are (MovieLens: age and gender, from the
context each rating carries).

A user's groups are the values of ``GROUP_KEYS`` in their events' context; a model's figures are
kept per group by :class:`GroupFigures` (an ``EngineObserver`` for streamrec, fed directly for
the baselines).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

#: Context keys that name a user group, where a log has them.
GROUP_KEYS = ("gender", "age")


def groups_of(context: Mapping[str, str]) -> tuple[str, ...]:
    """A user's groups from an event's context.

    >>> groups_of({"gender": "F", "age": "25-34", "hour": "9"})
    ('gender=F', 'age=25-34')
    """
    return tuple(f"{key}={context[key]}" for key in GROUP_KEYS if key in context)


class GroupFigures:
    """Positives, hits and squared errors per group of users; ``membership`` maps each user to
    their groups (shared by every model's figures, filled as the stream goes).

    >>> membership = {"u": ("gender=F",), "v": ("gender=M",)}
    >>> f = GroupFigures(membership, k=2)
    >>> f.positive("u", 1, (1, 2)); f.positive("v", 3, (1, 2)); f.rating("u", 4.0, 5.0)
    >>> f.report()["gender=F"], f.report()["gender=M"]["hit_rate"]
    ({'positives': 1, 'hit_rate': 1.0, 'ratings': 1, 'rmse': 1.0}, 0.0)
    """

    def __init__(self, membership: Mapping[str, tuple[str, ...]], k: int = 10) -> None:
        self.membership, self.k = membership, k
        self.sums: dict[str, list[float]] = {}  # group -> positives, hits, ratings, squared error

    def _groups(self, user: str) -> list[list[float]]:
        return [
            self.sums.setdefault(group, [0.0, 0.0, 0.0, 0.0])
            for group in self.membership.get(user, ())
        ]

    def positive(self, user: str, item: Any, shown: tuple[Any, ...] | list[Any]) -> None:
        hit = float(item in tuple(shown)[: self.k])
        for sums in self._groups(user):
            sums[0] += 1.0
            sums[1] += hit

    def rating(self, user: str, predicted: float, actual: float) -> None:
        for sums in self._groups(user):
            sums[2] += 1.0
            sums[3] += (predicted - actual) ** 2

    def renumber(self, mapping: np.ndarray) -> None:
        """Nothing kept by item id."""

    def report(self) -> dict[str, dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {}
        for group, (positives, hits, ratings, squared) in sorted(self.sums.items()):
            figures: dict[str, Any] = {"positives": int(positives)}
            if positives:
                figures["hit_rate"] = round(hits / positives, 4)
            figures["ratings"] = int(ratings)
            if ratings:
                figures["rmse"] = round(math.sqrt(squared / ratings), 4)
            out[group] = figures
        return out
