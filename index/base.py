"""The item index protocol: numpy in, numpy out; ids are int64 item ids."""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from pathlib import Path
from typing import NamedTuple, Protocol

import numpy as np

Exclude = Sequence[Collection[int]] | None


class SearchResult(NamedTuple):
    """Top-k per query, best first; rows padded with score ``-inf`` and id ``-1``."""

    scores: np.ndarray  # (n_queries, k) float32
    ids: np.ndarray  # (n_queries, k) int64

    def row(self, n: int) -> list[tuple[int, float]]:
        """Query ``n``'s results as ``(id, score)``, best first, without the padding.

        >>> SearchResult(np.array([[2.0, -np.inf]]), np.array([[7, -1]])).row(0)
        [(7, 2.0)]
        """
        valid = self.ids[n] >= 0
        return list(zip(self.ids[n][valid].tolist(), self.scores[n][valid].tolist(), strict=True))


class ItemIndex(Protocol):
    """Maximum inner product search over item vectors, keyed by item id."""

    dim: int

    def __len__(self) -> int: ...

    def upsert(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        """Insert or replace the vectors of ``ids``."""

    def remove(self, ids: np.ndarray) -> None:
        """Forget ``ids`` (unknown ids are ignored)."""

    def search(self, queries: np.ndarray, k: int, exclude: Exclude = None) -> SearchResult:
        """The ``k`` items of largest inner product per query, skipping ``exclude[q]``."""

    def all_items(self) -> tuple[np.ndarray, np.ndarray]:
        """Every id and its vector (what a snapshot keeps)."""

    def vectors(self, ids: np.ndarray) -> np.ndarray:
        """The stored vectors of ``ids``, in their order (zeros for ids not in the index)."""

    def save(self, path: Path) -> None:
        """Write the index so that :func:`index.factory.load_index` restores it."""


def as_ids(ids: np.ndarray | Sequence[int]) -> np.ndarray:
    return np.ascontiguousarray(np.asarray(ids, dtype=np.int64).reshape(-1))


def new_ids(ids: np.ndarray | Sequence[int]) -> np.ndarray:
    """:func:`as_ids` of ids to write: an id is at least 0 (FAISS answers -1 for "none").

    >>> new_ids([3, 10**12]).tolist()
    [3, 1000000000000]
    >>> new_ids([3, -1])
    Traceback (most recent call last):
    ...
    ValueError: item ids must be >= 0 (FAISS answers -1 for no item): got -1
    """
    out = as_ids(ids)
    if len(out) and out.min() < 0:
        raise ValueError(f"item ids must be >= 0 (FAISS answers -1 for no item): got {out.min()}")
    return out


def as_matrix(vectors: np.ndarray, dim: int) -> np.ndarray:
    m = np.ascontiguousarray(np.asarray(vectors, dtype=np.float32))
    if m.ndim == 1:
        m = m.reshape(1, -1)
    if m.shape[1] != dim:
        raise ValueError(f"vectors have dimension {m.shape[1]}, the index {dim}")
    if not np.isfinite(m).all():
        raise ValueError("vectors hold non-finite values")
    return m


def last_writes(ids: np.ndarray, vectors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``ids`` and their vectors once each, the last write winning for an id given twice.

    >>> ids, vecs = last_writes(np.array([4, 5, 4]), np.array([[1.0], [2.0], [3.0]]))
    >>> ids.tolist(), vecs.tolist()
    ([5, 4], [[2.0], [3.0]])
    """
    _, last = np.unique(ids[::-1], return_index=True)
    keep = np.sort(len(ids) - 1 - last)
    return ids[keep], vectors[keep]


def empty_result(n: int, k: int) -> SearchResult:
    return SearchResult(np.full((n, k), -np.inf, np.float32), np.full((n, k), -1, np.int64))


def filter_top(scores: np.ndarray, ids: np.ndarray, k: int, exclude: Exclude) -> SearchResult:
    """Keep per row the best ``k`` ids that are valid and not excluded.

    >>> s = np.array([[3.0, 2.0, 1.0, 0.5]], np.float32)
    >>> i = np.array([[7, 8, -1, 9]])
    >>> filter_top(s, i, 2, [{8}]).ids.tolist()
    [[7, 9]]
    """
    out = empty_result(len(ids), k)
    for row in range(len(ids)):
        skip = exclude[row] if exclude is not None else ()
        n = 0
        for score, item in zip(scores[row].tolist(), ids[row].tolist(), strict=True):
            if item < 0 or item in skip:
                continue
            out.scores[row, n], out.ids[row, n] = score, item
            n += 1
            if n == k:
                break
    return out


def search_excluding(
    search: Callable[[np.ndarray, int], tuple[np.ndarray, np.ndarray]],
    queries: np.ndarray,
    k: int,
    exclude: Exclude,
    size: int,
) -> SearchResult:
    """Top ``k`` per query without its excluded ids, from a FAISS-style ``search(q, n)``.

    Asks for ``k`` plus a margin of ``2 k`` first; the rows that come back short (their
    excluded items crowd the top) are searched again with room for all their exclusions, so
    a long history costs only the users whose history is what they would be shown.

    >>> vectors = np.eye(4, dtype=np.float32)[::-1] * np.array([[4], [3], [2], [1]])
    >>> flat = lambda q, n: _top(q @ vectors.T, n)
    >>> search_excluding(flat, np.ones((1, 4), np.float32), 1, [{0, 1, 2}], 4).ids.tolist()
    [[3]]
    """
    longest = max((len(e) for e in exclude), default=0) if exclude is not None else 0
    full = min(k + longest, size)
    fetch = min(k + min(longest, 2 * k), full)
    scores, ids = search(queries, fetch)
    if exclude is None and fetch == k:
        return SearchResult(scores, ids)
    out = filter_top(scores, ids, k, exclude)
    short = np.flatnonzero(out.ids[:, -1] < 0) if fetch < full and k else np.zeros(0, np.int64)
    if len(short):
        again = [exclude[int(row)] for row in short] if exclude is not None else None
        scores, ids = search(queries[short], full)
        redo = filter_top(scores, ids, k, again)
        out.scores[short], out.ids[short] = redo.scores, redo.ids
    return out


def _top(scores: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    order = np.argsort(-scores, axis=1)[:, :n]
    return np.take_along_axis(scores, order, axis=1), order


def merge_results(a: SearchResult, b: SearchResult, k: int) -> SearchResult:
    """Merge two result sets row by row (ids must be disjoint), best ``k`` first."""
    scores = np.concatenate([a.scores, b.scores], axis=1)
    ids = np.concatenate([a.ids, b.ids], axis=1)
    order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return SearchResult(
        np.take_along_axis(scores, order, axis=1), np.take_along_axis(ids, order, axis=1)
    )
