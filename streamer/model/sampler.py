"""Negative sampling for learning from implicit feedback."""

from __future__ import annotations

from collections.abc import Container

import numpy as np

_BLOCK = 8192  # random numbers drawn per numpy call, consumed one by one


class NegativeSampler:
    """Draws negatives: by recent popularity, or uniformly from the catalogue, or a mix.

    A ring buffer of the last ``window`` interacted items, sampled uniformly, gives popularity
    sampling that follows the stream (popular-now, not popular-ever). Popularity-sampled
    negatives teach the model to discount popularity; uniform ones (``uniform=1``) leave
    popularity in the item biases. ``uniform`` is the share of uniform draws.

    Examples
    --------
    >>> s = NegativeSampler(window=100, seed=0, uniform=0.0)
    >>> for item in [1, 1, 1, 2]:
    ...     s.add(item)
    >>> s.sample(2, exclude={1})
    [2, 2]
    >>> s.sample(1, exclude={1, 2})
    []
    >>> sorted(set(NegativeSampler(seed=0, uniform=1.0).sample(50, n_items=3)))
    [0, 1, 2]
    """

    def __init__(self, window: int = 10_000, seed: int = 0, uniform: float = 0.0) -> None:
        self.uniform = uniform
        self._ring = np.zeros(window, np.int64)
        self._size = 0
        self._pos = 0
        self._rng = np.random.default_rng(seed)
        self._block: list[float] = []

    def add(self, item: int) -> None:
        self._ring[self._pos] = item
        self._pos = (self._pos + 1) % len(self._ring)
        self._size = min(self._size + 1, len(self._ring))

    def sample(
        self,
        n: int,
        exclude: Container[int] = (),
        n_items: int = 0,
        chosen: int = -1,
        gone: Container[int] = (),
    ) -> list[int]:
        """Up to ``n`` items not in ``exclude``, nor ``chosen``, nor in ``gone`` (the user's
        history, the item chosen and the expired ones, checked apart: no union is made);
        uniform draws are from ``range(n_items)``."""
        if n <= 0 or (self._size == 0 and n_items == 0):
            return []
        out: list[int] = []
        turns = 4 * n + 4
        if len(self._block) < 2 * turns:  # the next block goes under the rest: drawn from
            # after it, in the same order as when it was drawn once this one ran out
            self._block = self._rng.random(_BLOCK).tolist() + self._block
        block, ring, size, uniform = self._block, self._ring, self._size, self.uniform
        for _ in range(turns):  # (one draw per turn, inlined: ~9 per event)
            pick, position = block.pop(), block.pop()
            if n_items and (size == 0 or pick < uniform):
                item = int(position * n_items)
            else:
                item = int(ring[int(position * size)])
            if item >= 0 and item != chosen and item not in exclude and item not in gone:
                # (-1: an item dropped since: renumber)
                out.append(item)
                if len(out) == n:
                    break
        return out

    def renumber(self, mapping: np.ndarray) -> None:
        """Item ids renumbered by ``mapping`` (old -> new, -1: dropped; its draws rejected).

        >>> s = NegativeSampler(seed=0); s.add(0); s.add(1); s.add(2)
        >>> s.renumber(np.array([0, -1, 1])); sorted(set(s.sample(20)))  # 1 is gone, 2 is 1
        [0, 1]
        """
        ring = self._ring[: self._size]
        ring[:] = np.where(ring >= 0, mapping[ring], -1)
