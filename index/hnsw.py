"""Approximate search: a FAISS HNSW graph, rebuilt in the background, plus a fresh side index.

faiss-cpu's HNSW cannot remove or replace vectors. So the graph is built from a snapshot of all
vectors; vectors written after the snapshot live in a small exact side index (and their old
copies in the graph are skipped), until a background rebuild folds them in and swaps graphs.
"""

from __future__ import annotations

import threading
from pathlib import Path

import faiss
import numpy as np

from index.base import (
    Exclude,
    SearchResult,
    as_ids,
    as_matrix,
    filter_top,
    merge_results,
)
from index.exact import ExactIndex
from index.store import VectorStore


class HNSWIndex:
    """HNSW inner-product index with background rebuilds; fresh vectors are always findable.

    Parameters
    ----------
    dim
        Vector dimension.
    m
        HNSW graph degree.
    ef_construction, ef_search
        Breadth of the graph search at build and query time (larger: better recall, slower).
    rebuild_fraction, rebuild_min
        Rebuild once the side index holds more than ``max(rebuild_min, fraction * n)`` items.
    background
        Build in a thread (the worker) or inline (tests, tools).

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> idx = HNSWIndex(dim=8, rebuild_min=50, background=False)
    >>> idx.upsert(np.arange(200), rng.normal(size=(200, 8)))
    >>> idx.graph_size, len(idx)
    (200, 200)
    >>> idx.upsert(np.array([7]), np.full((1, 8), 9.0))  # replaced: found at once
    >>> int(idx.search(np.ones((1, 8)), k=1).ids[0, 0])
    7
    """

    kind = "hnsw"

    def __init__(
        self,
        dim: int,
        m: int = 32,
        ef_construction: int = 200,
        ef_search: int = 128,
        rebuild_fraction: float = 0.05,
        rebuild_min: int = 2000,
        background: bool = True,
    ) -> None:
        self.dim = dim
        self.m, self.ef_construction, self.ef_search = m, ef_construction, ef_search
        self.rebuild_fraction, self.rebuild_min = rebuild_fraction, rebuild_min
        self.background = background
        self._store = VectorStore(dim)
        self._graph: faiss.IndexHNSWFlat | None = None
        self._graph_ids = np.zeros(0, np.int64)  # graph position -> item id
        self._graph_seq = 0
        self._fresh = ExactIndex(dim)  # items written after the graph's snapshot
        self._gone: set[int] = set()  # graph items removed since its snapshot
        self._lock = threading.RLock()
        self._builder: threading.Thread | None = None
        self.rebuilds = 0

    def __len__(self) -> int:
        return len(self._store)

    @property
    def graph_size(self) -> int:
        return len(self._graph_ids)

    def upsert(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        ids = as_ids(ids)
        vectors = as_matrix(vectors, self.dim)
        with self._lock:
            self._store.put(ids, vectors)
            self._fresh.upsert(ids, vectors)
            self._gone.difference_update(ids.tolist())
        self._maybe_rebuild()

    def remove(self, ids: np.ndarray) -> None:
        ids = as_ids(ids)
        with self._lock:
            self._store.remove(ids)
            self._fresh.remove(ids)
            self._gone.update(ids.tolist())
        self._maybe_rebuild()

    def search(self, queries: np.ndarray, k: int, exclude: Exclude = None) -> SearchResult:
        queries = as_matrix(queries, self.dim)
        with self._lock:
            fresh = self._fresh.search(queries, k, exclude)
            if self._graph is None or k <= 0:
                return fresh
            stale = len(self._fresh) + len(self._gone)
            longest = max((len(e) for e in exclude), default=0) if exclude is not None else 0
            fetch = min(k + longest + stale, len(self._graph_ids))
            self._graph.hnsw.efSearch = max(self.ef_search, fetch)
            scores, pos = self._graph.search(queries, fetch)
            ids = np.where(pos >= 0, self._graph_ids[np.maximum(pos, 0)], -1)
            drop = _DropSet(self._fresh, self._gone)
            graph = filter_top(scores, ids, k, exclude, drop)
        return merge_results(graph, fresh, k)

    def wait(self) -> None:
        """Block until a running rebuild has swapped in."""
        builder = self._builder
        if builder is not None:
            builder.join()

    def rebuild(self) -> None:
        """Rebuild the graph from all current vectors now (inline)."""
        with self._lock:
            ids, vectors, seq = self._store.snapshot()
        self._build_and_swap(ids, vectors, seq)

    def _maybe_rebuild(self) -> None:
        pending = len(self._fresh) + len(self._gone)
        if pending < max(self.rebuild_min, self.rebuild_fraction * len(self._store)):
            return
        if self._builder is not None and self._builder.is_alive():
            return
        with self._lock:
            ids, vectors, seq = self._store.snapshot()
        if self.background:
            self._builder = threading.Thread(
                target=self._build_and_swap, args=(ids, vectors, seq), daemon=True
            )
            self._builder.start()
        else:
            self._build_and_swap(ids, vectors, seq)

    def _build_and_swap(self, ids: np.ndarray, vectors: np.ndarray, seq: int) -> None:
        graph = faiss.IndexHNSWFlat(self.dim, self.m, faiss.METRIC_INNER_PRODUCT)
        graph.hnsw.efConstruction = self.ef_construction
        if len(ids):
            graph.add(vectors)
        with self._lock:
            fresh_ids, fresh_vectors = self._store.since(seq)
            in_graph = set(ids.tolist())
            self._graph, self._graph_ids, self._graph_seq = graph, ids, seq
            self._fresh = ExactIndex(self.dim)
            if len(fresh_ids):
                self._fresh.upsert(fresh_ids, fresh_vectors)
            self._gone = {i for i in in_graph if i not in self._store}
            self.rebuilds += 1

    def save(self, path: Path) -> None:
        with self._lock:
            ids, vectors, _ = self._store.snapshot()
        np.savez(path, kind=self.kind, dim=self.dim, ids=ids, vectors=vectors)


class _DropSet:
    """Graph results to skip: items with a newer copy in the side index, or removed."""

    def __init__(self, fresh: ExactIndex, gone: set[int]) -> None:
        self.fresh, self.gone = fresh, gone

    def __contains__(self, item: object) -> bool:
        return item in self.fresh or item in self.gone
