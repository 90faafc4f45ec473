"""Rebuild-and-swap for approximate indexes that cannot be updated in place (HNSW).

An approximate FAISS index is built from a snapshot of all vectors. Vectors written after the
snapshot live in a small exact side index (their stale copies in the built index are skipped
inside FAISS, by an ID selector), so a fresh item is findable at once; once the side index
grows past a threshold, a new index is built from a new snapshot, in a background thread, and
swapped in.
"""

from __future__ import annotations

from abc import abstractmethod
from typing import Any

import faiss
import numpy as np

from index.background import BackgroundBuild
from index.base import (
    Exclude,
    SearchResult,
    as_ids,
    as_matrix,
    merge_results,
    new_ids,
    search_excluding,
)
from index.exact import ExactIndex


class SnapshotIndex(BackgroundBuild):
    """Base of rebuilt backends: subclasses say how to build and how to search."""

    kind = "snapshot"

    def __init__(
        self,
        dim: int,
        rebuild_fraction: float = 0.05,
        rebuild_min: int = 2000,
        background: bool = True,
    ) -> None:
        super().__init__(dim, background)
        self.rebuild_fraction, self.rebuild_min = rebuild_fraction, rebuild_min
        self._built: Any = None
        self._built_ids = np.zeros(0, np.int64)  # position in the built index -> item id
        # the built ids sorted, and each one's position in the built index: item id ->
        # position by a binary search (ids may be sparse: an array as long as the largest id
        # could not be made for an id of 10**12)
        self._sorted_ids = np.zeros(0, np.int64)
        self._sorted_positions = np.zeros(0, np.int64)
        self._stale: set[int] = set()  # positions whose item was rewritten or removed since
        self._fresh = ExactIndex(dim)  # items written after the built index's snapshot
        self._gone: set[int] = set()  # built items removed since its snapshot

    @abstractmethod
    def _build(self, vectors: np.ndarray) -> Any:
        """A FAISS index over ``vectors`` (positions are row numbers)."""

    @abstractmethod
    def _search_built(
        self, queries: np.ndarray, fetch: int, skip: Any
    ) -> tuple[np.ndarray, np.ndarray]:
        """Scores and positions of the best ``fetch`` rows of the built index per query,
        without the positions ``skip`` (a FAISS ``IDSelector``, or None) rejects."""

    @property
    def built_size(self) -> int:
        return len(self._built_ids)

    def upsert(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        ids = new_ids(ids)
        vectors = as_matrix(vectors, self.dim)
        with self._lock:
            self._store.put(ids, vectors)
            self._fresh.upsert(ids, vectors)
            self._gone.difference_update(ids.tolist())
            self._mark_stale(ids)
        self._maybe_rebuild()

    def remove(self, ids: np.ndarray) -> None:
        ids = as_ids(ids)
        with self._lock:
            self._store.remove(ids)
            self._fresh.remove(ids)
            self._gone.update(ids.tolist())
            self._mark_stale(ids)
        self._maybe_rebuild()

    def search(self, queries: np.ndarray, k: int, exclude: Exclude = None) -> SearchResult:
        queries = as_matrix(queries, self.dim)
        with self._lock:
            fresh = self._fresh.search(queries, k, exclude)
            if self._built is None or k <= 0:
                return fresh
            skip = None
            if self._stale:  # kept alive until the searches return
                stale = np.fromiter(self._stale, np.int64, len(self._stale))
                skip = faiss.IDSelectorNot(faiss.IDSelectorBatch(stale))

            def search(q: np.ndarray, fetch: int) -> tuple[np.ndarray, np.ndarray]:
                scores, pos = self._search_built(q, fetch, skip)
                return scores, np.where(pos >= 0, self._built_ids[np.maximum(pos, 0)], -1)

            built = search_excluding(search, queries, k, exclude, len(self._built_ids))
        return merge_results(built, fresh, k)

    def _mark_stale(self, ids: np.ndarray) -> None:
        if not len(ids) or not len(self._sorted_ids):
            return
        at = np.minimum(np.searchsorted(self._sorted_ids, ids), len(self._sorted_ids) - 1)
        built = self._sorted_ids[at] == ids
        self._stale.update(self._sorted_positions[at[built]].tolist())

    def _due(self) -> bool:
        pending = len(self._fresh) + len(self._gone)
        return pending >= max(self.rebuild_min, self.rebuild_fraction * len(self._store))

    def _build_and_swap(self, ids: np.ndarray, vectors: np.ndarray, seq: int) -> None:
        built = self._build(vectors) if len(ids) else None
        with self._lock:
            fresh_ids, fresh_vectors = self._store.since(seq)
            self._built, self._built_ids = built, ids
            self._sorted_positions = np.argsort(ids, kind="stable")
            self._sorted_ids = ids[self._sorted_positions]
            self._fresh = ExactIndex(self.dim)
            if len(fresh_ids):
                self._fresh.upsert(fresh_ids, fresh_vectors)
            self._gone = set(self._store.missing(ids).tolist())
            self._stale = set()
            self._mark_stale(np.concatenate([as_ids(fresh_ids), as_ids(list(self._gone))]))
            self.rebuilds += 1
