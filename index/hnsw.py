"""Approximate search on a FAISS HNSW graph (inner product), rebuilt in the background."""

from __future__ import annotations

from typing import Any

import faiss
import numpy as np

from index.snapshot import SnapshotIndex


class HNSWIndex(SnapshotIndex):
    """HNSW inner-product index; fresh vectors are findable before the next rebuild.

    faiss-cpu's HNSW cannot remove or replace vectors, hence the snapshot-and-swap of
    :class:`~index.snapshot.SnapshotIndex`.

    Parameters
    ----------
    dim
        Vector dimension.
    m
        Graph degree.
    ef_construction, ef_search
        Breadth of the graph search at build and query time (larger: better recall, slower).
    rebuild_fraction, rebuild_min, background
        See :class:`~index.snapshot.SnapshotIndex`.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> idx = HNSWIndex(dim=8, rebuild_min=50, background=False)
    >>> idx.upsert(np.arange(200), rng.normal(size=(200, 8)))
    >>> idx.built_size, len(idx)
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
        **kwargs: Any,
    ) -> None:
        super().__init__(dim, **kwargs)
        self.m, self.ef_construction, self.ef_search = m, ef_construction, ef_search

    def _build(self, vectors: np.ndarray) -> Any:
        graph = faiss.IndexHNSWFlat(self.dim, self.m, faiss.METRIC_INNER_PRODUCT)
        graph.hnsw.efConstruction = self.ef_construction
        graph.add(vectors)
        return graph

    def _search_built(
        self, queries: np.ndarray, fetch: int, skip: Any
    ) -> tuple[np.ndarray, np.ndarray]:
        ef = max(self.ef_search, fetch)
        params = None
        if skip is not None:  # missing from FAISS's stubs
            params = faiss.SearchParametersHNSW(efSearch=ef, sel=skip)  # type: ignore[attr-defined]
        self._built.hnsw.efSearch = ef
        scores, positions = self._built.search(queries, fetch, params=params)
        return scores, positions
