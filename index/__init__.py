"""Item vector indexes for maximum inner product search (numpy in, numpy out)."""

from index.base import ItemIndex, SearchResult
from index.exact import ExactIndex
from index.factory import load_index, make_index
from index.hnsw import HNSWIndex
from index.ivf import IVFIndex
from index.snapshot import SnapshotIndex

__all__ = [
    "ExactIndex",
    "HNSWIndex",
    "IVFIndex",
    "ItemIndex",
    "SearchResult",
    "SnapshotIndex",
    "load_index",
    "make_index",
]
