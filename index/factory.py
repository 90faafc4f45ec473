"""Pick an index backend by name or by catalogue size; restore a saved index."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from index.base import ItemIndex
from index.exact import ExactIndex
from index.hnsw import HNSWIndex

BACKENDS = ("auto", "exact", "hnsw")


def make_index(
    backend: str, dim: int, expected_items: int = 0, hnsw_min_items: int = 50_000
) -> ExactIndex | HNSWIndex:
    """An empty index: ``exact``, ``hnsw``, or ``auto`` (HNSW from ``hnsw_min_items`` items).

    >>> make_index("auto", 8).kind, make_index("auto", 8, expected_items=10**6).kind
    ('exact', 'hnsw')
    >>> make_index("lsh", 8)
    Traceback (most recent call last):
    ...
    ValueError: unknown index backend 'lsh'; expected one of ('auto', 'exact', 'hnsw')
    """
    if backend not in BACKENDS:
        raise ValueError(f"unknown index backend {backend!r}; expected one of {BACKENDS}")
    if backend == "hnsw" or (backend == "auto" and expected_items >= hnsw_min_items):
        return HNSWIndex(dim)
    return ExactIndex(dim)


def load_index(path: Path) -> ItemIndex:
    """Restore an index written by ``save`` (the same backend, the same vectors)."""
    with np.load(path) as data:
        index = make_index(str(data["kind"]), int(data["dim"]))
        if len(data["ids"]):
            index.upsert(data["ids"], data["vectors"])
    if isinstance(index, HNSWIndex):
        index.rebuild()
    return index
