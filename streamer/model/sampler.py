"""Negative sampling by popularity, for learning from implicit feedback."""

from __future__ import annotations

from collections.abc import Container

import numpy as np


class NegativeSampler:
    """Draws items with probability proportional to their recent interaction count.

    A ring buffer of the last ``window`` interacted items is sampled uniformly, which is
    popularity sampling that follows the stream (popular-now, not popular-ever).

    Examples
    --------
    >>> s = NegativeSampler(window=100, seed=0)
    >>> for item in [1, 1, 1, 2]:
    ...     s.add(item)
    >>> s.sample(2, exclude={1})
    [2, 2]
    >>> s.sample(1, exclude={1, 2})
    []
    """

    def __init__(self, window: int = 10_000, seed: int = 0) -> None:
        self._ring = np.zeros(window, np.int64)
        self._size = 0
        self._pos = 0
        self._rng = np.random.default_rng(seed)

    def add(self, item: int) -> None:
        self._ring[self._pos] = item
        self._pos = (self._pos + 1) % len(self._ring)
        self._size = min(self._size + 1, len(self._ring))

    def sample(self, n: int, exclude: Container[int] = ()) -> list[int]:
        """Up to ``n`` items not in ``exclude`` (fewer when the buffer holds no others)."""
        if self._size == 0 or n <= 0:
            return []
        out: list[int] = []
        draws = self._ring[self._rng.integers(0, self._size, size=4 * n + 4)].tolist()
        for item in draws:
            if item not in exclude:
                out.append(item)
                if len(out) == n:
                    break
        return out
