"""A growable matrix of item vectors keyed by id: the source of truth for index rebuilds."""

from __future__ import annotations

import numpy as np


class VectorStore:
    """Rows of float32 vectors addressed by int64 id, with a write sequence number per id.

    Examples
    --------
    >>> s = VectorStore(dim=2)
    >>> s.put(np.array([5, 6]), np.array([[1, 2], [3, 4]], np.float32))
    >>> s.remove(np.array([5])); len(s)
    1
    >>> ids, vecs, seq = s.snapshot(); ids.tolist(), vecs.tolist(), seq
    ([6], [[3.0, 4.0]], 3)
    >>> s.missing(np.array([5, 6])).tolist()  # 5 was removed
    [5]
    """

    def __init__(self, dim: int, capacity: int = 1024) -> None:
        self.dim = dim
        self._matrix = np.zeros((capacity, dim), np.float32)
        self._slot: dict[int, int] = {}
        self._free: list[int] = []
        self._written = np.zeros(capacity, np.int64)  # write sequence per slot
        self.seq = 0

    def __len__(self) -> int:
        return len(self._slot)

    def __contains__(self, item: int) -> bool:
        return item in self._slot

    def put(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        for item, vector in zip(ids.tolist(), vectors, strict=True):
            slot = self._slot.get(item)
            if slot is None:
                slot = self._free.pop() if self._free else self._grow()
                self._slot[item] = slot
            self.seq += 1
            self._matrix[slot] = vector
            self._written[slot] = self.seq

    def remove(self, ids: np.ndarray) -> None:
        for item in ids.tolist():
            slot = self._slot.pop(item, None)
            if slot is not None:
                self._free.append(slot)
        self.seq += 1

    def get(self, ids: np.ndarray) -> np.ndarray:
        """The vectors of ``ids`` (zeros for ids not stored).

        >>> s = VectorStore(dim=2); s.put(np.array([4]), np.array([[1, 2]], np.float32))
        >>> s.get(np.array([4, 9])).tolist()
        [[1.0, 2.0], [0.0, 0.0]]
        """
        slots = np.fromiter((self._slot.get(i, -1) for i in ids.tolist()), np.int64, len(ids))
        out = self._matrix[np.maximum(slots, 0)]
        out[slots < 0] = 0.0
        return out

    def missing(self, ids: np.ndarray) -> np.ndarray:
        """Those of ``ids`` not in the store: removed since a snapshot that held them."""
        return np.array([i for i in ids.tolist() if i not in self._slot], np.int64)

    def written(self, item: int) -> int:
        return int(self._written[self._slot[item]])

    def snapshot(self) -> tuple[np.ndarray, np.ndarray, int]:
        """Copies of all ids and vectors, and the sequence number they include."""
        ids = np.fromiter(self._slot.keys(), np.int64, len(self._slot))
        slots = np.fromiter(self._slot.values(), np.int64, len(self._slot))
        return ids, self._matrix[slots].copy(), self.seq

    def since(self, seq: int) -> tuple[np.ndarray, np.ndarray]:
        """Ids and vectors written after ``seq``."""
        ids = np.fromiter(self._slot.keys(), np.int64, len(self._slot))
        slots = np.fromiter(self._slot.values(), np.int64, len(self._slot))
        newer = self._written[slots] > seq
        return ids[newer], self._matrix[slots[newer]].copy()

    def _grow(self) -> int:
        used = len(self._slot) + len(self._free)
        if used == len(self._matrix):
            self._matrix = np.vstack([self._matrix, np.zeros_like(self._matrix)])
            self._written = np.concatenate([self._written, np.zeros_like(self._written)])
        return used
