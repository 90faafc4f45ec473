"""What the worker remembers per user: recent items (to exclude) and the latest context."""

from __future__ import annotations

import itertools
from collections import OrderedDict

import numpy as np


class UserState:
    """Bounded per-user history and latest context.

    Examples
    --------
    >>> s = UserState(history_size=2)
    >>> for item in (1, 2, 3):
    ...     s.add("u", item)
    >>> sorted(s.history("u")), s.history("nobody"), s.recent("u", 5)
    ([2, 3], set(), [2, 3])
    >>> s.set_context("u", {"device": "tv"}); s.context("u")
    {'device': 'tv'}
    """

    def __init__(self, history_size: int = 500) -> None:
        self.history_size = history_size
        self._history: dict[str, OrderedDict[int, None]] = {}
        self._context: dict[str, dict[str, str]] = {}

    def __len__(self) -> int:
        return len(self._history)

    def add(self, user: str, item: int) -> None:
        items = self._history.get(user)
        if items is None:
            items = self._history[user] = OrderedDict()
        items[item] = None
        items.move_to_end(item)
        if len(items) > self.history_size:
            items.popitem(last=False)

    def history(self, user: str) -> set[int] | OrderedDict[int, None]:
        """The user's recent items (supports ``in`` and ``len``)."""
        return self._history.get(user) or set()

    def recent(self, user: str, n: int) -> list[int]:
        """The user's last ``n`` distinct items, the most recent last."""
        items = self._history.get(user)
        if not items:
            return []
        return list(itertools.islice(reversed(items), n))[::-1]

    def renumber(self, mapping: np.ndarray) -> None:
        """Item ids renumbered by ``mapping`` (old -> new, -1: dropped from every history).

        >>> s = UserState(); s.add("u", 0); s.add("u", 2); s.add("u", 1)
        >>> s.renumber(np.array([0, -1, 1])); s.recent("u", 5)
        [0, 1]
        """
        m = mapping.tolist()
        for user, items in self._history.items():
            self._history[user] = OrderedDict((m[i], None) for i in items if m[i] >= 0)

    def forget(self, user: str) -> None:
        """Drop ``user``'s history and context."""
        self._history.pop(user, None)
        self._context.pop(user, None)

    def set_context(self, user: str, context: dict[str, str]) -> None:
        self._context[user] = context

    def context(self, user: str) -> dict[str, str]:
        return self._context.get(user, {})
