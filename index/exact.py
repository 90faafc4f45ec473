"""Exact maximum inner product search: FAISS ``IndexIDMap2`` over ``IndexFlatIP``."""

from __future__ import annotations

from pathlib import Path

import faiss
import numpy as np

from index.base import (
    Exclude,
    SearchResult,
    as_ids,
    as_matrix,
    empty_result,
    last_writes,
    new_ids,
    search_excluding,
)


class ExactIndex:
    """Brute-force inner product over all item vectors; exact, best for small catalogues.

    Examples
    --------
    >>> idx = ExactIndex(dim=2)
    >>> idx.upsert(np.array([10, 11, 12]), np.array([[1, 0], [0, 1], [1, 1]]))
    >>> idx.search(np.array([[1.0, 0.2]]), k=2).ids.tolist()
    [[12, 10]]
    >>> idx.search(np.array([[1.0, 0.2]]), k=2, exclude=[{12}]).ids.tolist()
    [[10, 11]]
    >>> idx.upsert(np.array([11]), np.array([[5, 0]])); len(idx)
    3
    >>> idx.search(np.array([[1.0, 0.2]]), k=1).ids.tolist()
    [[11]]
    """

    kind = "exact"

    def __init__(self, dim: int) -> None:
        self.dim = dim
        self._flat = faiss.IndexFlatIP(dim)
        self._index = faiss.IndexIDMap2(self._flat)
        self._ids: dict[int, int] = {}  # id -> its row in the flat storage
        # the same as an array over ids 0 .. len(_dense) - 1 (-1: not in the index): a list's
        # ~60 vectors read in one numpy lookup, not ~60 dict lookups (a catalogue's ids are
        # dense; ids far past the index's size stay in the dict alone, see _cover)
        self._dense = np.full(0, -1, np.int64)

    def __len__(self) -> int:
        return len(self._ids)

    def __contains__(self, item: object) -> bool:
        return item in self._ids

    def upsert(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        ids = new_ids(ids)
        vectors = as_matrix(vectors, self.dim)
        if len(ids) != len(vectors):
            raise ValueError(f"{len(ids)} ids for {len(vectors)} vectors")
        ids, vectors = last_writes(ids, vectors)
        rows = self._rows(ids)
        known = rows >= 0
        if known.any():  # rewritten in place: O(k), where remove + add would move O(n) rows
            self._storage()[rows[known]] = vectors[known]
        new = ids[~known]
        if len(new):
            first = self._flat.ntotal
            self._index.add_with_ids(vectors[~known], new)
            self._ids.update(zip(new.tolist(), range(first, first + len(new)), strict=True))
            self._cover(new, np.arange(first, first + len(new)))

    def remove(self, ids: np.ndarray) -> None:
        present = [i for i in as_ids(ids).tolist() if i in self._ids]
        if present:
            self._index.remove_ids(np.asarray(present, dtype=np.int64))  # type: ignore[arg-type]
            order = faiss.vector_to_array(self._index.id_map).tolist()  # rows moved up
            self._ids = {item: row for row, item in enumerate(order)}
            self._refill()

    def all_items(self) -> tuple[np.ndarray, np.ndarray]:
        """All ids and their vectors, in storage order."""
        ids = faiss.vector_to_array(self._index.id_map).astype(np.int64)
        flat = faiss.downcast_index(self._index.index)
        return ids, flat.reconstruct_n(0, flat.ntotal).reshape(-1, self.dim)

    def vectors(self, ids: np.ndarray) -> np.ndarray:
        """The stored vectors of ``ids`` (zeros for ids not in the index)."""
        ids = as_ids(ids)
        if not self._flat.ntotal:
            return np.zeros((len(ids), self.dim), np.float32)
        rows = self._rows(ids)
        out = self._storage()[np.maximum(rows, 0)]
        out[rows < 0] = 0.0
        return out

    def _rows(self, ids: np.ndarray) -> np.ndarray:
        """Each id's row in the flat storage, -1 for ids not in the index."""
        if len(ids) and ids.min() >= 0 and ids.max() < len(self._dense):
            return self._dense[ids]
        return np.fromiter((self._ids.get(i, -1) for i in ids.tolist()), np.int64, len(ids))

    def _cover(self, ids: np.ndarray, rows: np.ndarray) -> None:
        """Enter new ``ids``' ``rows`` in the dense lookup, which holds every id of the index
        below its length (-1 there: not in the index). It grows (filled again from the dict)
        to take a larger id while the ids are dense (the largest at most twice the index's
        size, plus 1,024); larger ones stay in the dict alone, which :meth:`_rows` reads for
        them."""
        top = int(ids.max()) if len(ids) else -1
        if len(self._dense) <= top < 2 * len(self._ids) + 1024:
            self._dense = np.full(max(2 * len(self._dense), top + 1), -1, np.int64)
            self._refill()
        else:
            inside = ids < len(self._dense)
            self._dense[ids[inside]] = rows[inside]

    def _refill(self) -> None:
        """The dense lookup from the dict (after rows moved, or to a new length)."""
        self._dense[:] = -1
        ids = np.fromiter(self._ids.keys(), np.int64, len(self._ids))
        rows = np.fromiter(self._ids.values(), np.int64, len(self._ids))
        inside = ids < len(self._dense)
        self._dense[ids[inside]] = rows[inside]

    def _storage(self) -> np.ndarray:
        """The flat storage's vectors as a writable (rows, dim) view."""
        storage = faiss.rev_swig_ptr(self._flat.get_xb(), self._flat.ntotal * self.dim)
        return storage.reshape(-1, self.dim)

    def search(self, queries: np.ndarray, k: int, exclude: Exclude = None) -> SearchResult:
        queries = as_matrix(queries, self.dim)
        if not self._ids or k <= 0:
            return empty_result(len(queries), max(k, 0))
        return search_excluding(self._index.search, queries, k, exclude, len(self._ids))

    def save(self, path: Path) -> None:
        ids, vectors = self.all_items()
        np.savez(path, kind=self.kind, dim=self.dim, ids=ids, vectors=vectors)
