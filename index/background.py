"""Rebuilding an index from a snapshot of its vectors, inline or in a background thread."""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from pathlib import Path

import numpy as np

from index.store import VectorStore


class BackgroundBuild(ABC):
    """The store of all vectors (the truth a rebuild starts from), the lock that guards the
    live index, and the builder thread. Subclasses say when a rebuild is due and how to build
    from a snapshot and swap the result in (catching up on the writes made meanwhile)."""

    kind = "index"

    def __init__(self, dim: int, background: bool) -> None:
        self.dim, self.background = dim, background
        self._store = VectorStore(dim)
        self._lock = threading.RLock()
        self._builder: threading.Thread | None = None
        self.rebuilds = 0

    def __len__(self) -> int:
        return len(self._store)

    @abstractmethod
    def _due(self) -> bool:
        """Whether a rebuild should start now."""

    @abstractmethod
    def _build_and_swap(self, ids: np.ndarray, vectors: np.ndarray, seq: int) -> None:
        """Build from a snapshot taken at write ``seq``; swap it in under the lock."""

    def wait(self) -> None:
        """Block until a running rebuild has swapped in."""
        builder = self._builder
        if builder is not None:
            builder.join()

    def rebuild(self) -> None:
        """Rebuild from all current vectors now (inline)."""
        with self._lock:
            snapshot = self._store.snapshot()
        self._build_and_swap(*snapshot)

    def all_items(self) -> tuple[np.ndarray, np.ndarray]:
        """All ids and their latest vectors."""
        with self._lock:
            ids, vectors, _ = self._store.snapshot()
        return ids, vectors

    def vectors(self, ids: np.ndarray) -> np.ndarray:
        """The latest vectors of ``ids`` (zeros for ids not in the index)."""
        with self._lock:
            return self._store.get(np.asarray(ids, np.int64))

    def save(self, path: Path) -> None:
        ids, vectors = self.all_items()
        np.savez(path, kind=self.kind, dim=self.dim, ids=ids, vectors=vectors)

    def _maybe_rebuild(self) -> None:
        if self._builder is not None and self._builder.is_alive():
            return
        if not self._due():
            return
        with self._lock:
            snapshot = self._store.snapshot()
        if self.background:
            self._builder = threading.Thread(
                target=self._build_and_swap, args=snapshot, daemon=True
            )
            self._builder.start()
        else:
            self._build_and_swap(*snapshot)
