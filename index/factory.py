"""Pick an index backend by name or by catalogue size; restore a saved index."""

from __future__ import annotations

from pathlib import Path

import faiss
import numpy as np

from index.background import BackgroundBuild
from index.base import ItemIndex
from index.exact import ExactIndex
from index.hnsw import HNSWIndex
from index.ivf import IVFIndex
from index.snapshot import SnapshotIndex

BACKENDS = ("auto", "exact", "ivf", "hnsw")
#: What ``auto`` moves to for large catalogues (the better of the two in the benchmarks).
LARGE = "ivf"


def make_index(
    backend: str, dim: int, expected_items: int = 0, large_min_items: int = 50_000
) -> ExactIndex | IVFIndex | SnapshotIndex:
    """An empty index: ``exact``, ``ivf``, ``hnsw``, or ``auto`` (exact for catalogues under
    ``large_min_items``, else ``LARGE``).

    >>> make_index("auto", 8).kind, make_index("auto", 8, expected_items=10**6).kind
    ('exact', 'ivf')
    >>> make_index("lsh", 8)
    Traceback (most recent call last):
    ...
    ValueError: unknown index backend 'lsh'; expected one of ('auto', 'exact', 'ivf', 'hnsw')
    """
    if backend not in BACKENDS:
        raise ValueError(f"unknown index backend {backend!r}; expected one of {BACKENDS}")
    if backend == "auto":
        backend = LARGE if expected_items >= large_min_items else "exact"
    if backend == "hnsw":
        return HNSWIndex(dim)
    if backend == "ivf":
        return IVFIndex(dim)
    return ExactIndex(dim)


def set_threads(threads: int) -> None:
    """FAISS's OpenMP thread count for this process (0 keeps FAISS's default: all cores)."""
    if threads > 0:
        faiss.omp_set_num_threads(threads)


def load_index(path: Path) -> ItemIndex:
    """Restore an index written by ``save`` (the same backend, the same vectors)."""
    with np.load(path) as data:
        index = make_index(str(data["kind"]), int(data["dim"]))
        if len(data["ids"]):
            index.upsert(data["ids"], data["vectors"])
    if isinstance(index, BackgroundBuild):
        index.rebuild()
    return index
