"""Rows of a sparse item-by-item table in one pool, compiled: each item's row is a small
open-addressing hash table (neighbour id -> a few float32 values, linear probing) in its own
block of the shared pool, so that one row's probes stay in a few cache lines. A row at most
``MAX_LOAD`` full moves to a block twice its size; a row can be pruned to its ``keep`` largest
values in column 0 (rebuilt in place).

A pool that fills up is :func:`repacked`: its live blocks moved to the front of a new pool (as
large, or twice as large when they fill more than half of it).

Used by item-kNN's co-occurrence counts (``streamer.strategies.cooc_kernel``) and by the
neighbourhood rater's co-rating sums (``streamer.model.neighbours``).
"""

from __future__ import annotations

import numpy as np

from streamer.jit import compiled

EMPTY = -1  # a pool cell without a neighbour
MAX_LOAD = 0.75  # of a row's block
FIRST_BLOCK = 8
_GOLDEN = 0x9E3779B97F4A7C15  # Fibonacci hashing


def grown(array: np.ndarray, size: int, fill: int) -> np.ndarray:
    """``array`` in a new array of ``size`` rows, the new rows ``fill``."""
    out = np.full((size, *array.shape[1:]), fill, array.dtype)
    out[: len(array)] = array
    return out


def repacked(
    neighbour: np.ndarray,
    values: np.ndarray,
    used: np.ndarray,
    start: np.ndarray,
    sizes: np.ndarray,
    double: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """A full pool's rows moved to the front of a new pool, in row order, without the blocks
    that moves and cleared rows left behind (``start`` and ``used`` updated in place). The new
    pool is the old one's size if the rows fill at most half of it (and not ``double``), else
    twice its size: a pool holds at most twice (four times, just after doubling) the blocks its
    rows use.

    >>> neighbour, values = np.array([5, EMPTY, 7, 8]), np.array([1.0, 0.0, 2.0, 3.0])
    >>> used, start, sizes = np.array([4]), np.array([2, 0]), np.array([2, 0])  # row 1: cleared
    >>> neighbour, values = repacked(neighbour, values, used, start, sizes)
    >>> neighbour.tolist(), values.tolist(), start.tolist(), used.tolist()
    ([7, 8, -1, -1], [2.0, 3.0, 0.0, 0.0], [0, 0], [2])
    """
    live = np.flatnonzero(sizes)
    blocks = sizes[live]
    total = int(blocks.sum())
    capacity = 2 * len(neighbour) if double or 2 * total > len(neighbour) else len(neighbour)
    offsets = np.cumsum(blocks) - blocks
    source = np.repeat(start[live] - offsets, blocks) + np.arange(total)
    out_neighbour = np.full(capacity, EMPTY, neighbour.dtype)
    out_values = np.zeros((capacity, *values.shape[1:]), values.dtype)
    out_neighbour[:total] = neighbour[source]
    out_values[:total] = values[source]
    start[live] = offsets
    used[0] = total
    return out_neighbour, out_values


def trimmed(
    neighbour: np.ndarray, values: np.ndarray, used: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """The pool cut to the cells in use (a snapshot need not carry the free end); the next
    block that does not fit repacks it. ``(neighbour, values)`` as they are if already tight.

    >>> n, v = trimmed(np.full(32, EMPTY), np.zeros((32, 2)), np.array([10]))
    >>> len(n), v.shape
    (10, (10, 2))
    """
    size = max(int(used[0]), FIRST_BLOCK)
    if size >= len(neighbour):
        return neighbour, values
    return neighbour[:size].copy(), values[:size].copy()


@compiled
def locate(
    other: int,
    start: int,
    size: int,
    neighbour: np.ndarray,
) -> int:
    """The cell of ``other`` in the block, or the empty cell where it would go."""
    cell = np.int64((np.uint64(other) * np.uint64(_GOLDEN)) >> np.uint64(32)) & (size - 1)
    while True:
        there = neighbour[start + cell]
        if there == other or there == EMPTY:  # noqa: SIM109 (compiled: no tuple)
            return int(start + cell)
        cell = (cell + 1) & (size - 1)


@compiled
def block_for(
    length: int,
) -> int:
    """The block size a row of ``length`` neighbours needs."""
    size = FIRST_BLOCK
    while length > MAX_LOAD * size:
        size *= 2
    return size


@compiled
def move(
    row: int,
    size: int,
    neighbour: np.ndarray,
    count: np.ndarray,
    used: np.ndarray,
    start: np.ndarray,
    sizes: np.ndarray,
) -> None:
    """Rehash ``row`` into a new block of ``size`` cells at the pool's end."""
    old, old_size = start[row], sizes[row]
    new = used[0]
    used[0] += size
    for c in range(old_size):
        other = neighbour[old + c]
        if other != EMPTY:
            cell = locate(other, new, size, neighbour)
            neighbour[cell] = other
            count[cell] = count[old + c]
    start[row], sizes[row] = new, size


@compiled
def prune(
    row: int,
    keep: int,
    neighbour: np.ndarray,
    count: np.ndarray,
    start: np.ndarray,
    sizes: np.ndarray,
    length: np.ndarray,
) -> None:
    """Keep the ``keep`` largest counts of ``row`` (ties: the lowest cell), rebuilt in place."""
    first, size = start[row], sizes[row]
    cells = np.empty(length[row], np.int64)
    n = 0
    for c in range(first, first + size):
        if neighbour[c] != EMPTY:
            cells[n] = c
            n += 1
    order = np.argsort(-count[cells, 0], kind="mergesort")[:keep]
    kept_ids = neighbour[cells[order]].copy()
    kept_counts = count[cells[order]].copy()
    neighbour[first : first + size] = EMPTY
    for i in range(len(kept_ids)):
        cell = locate(kept_ids[i], first, size, neighbour)
        neighbour[cell] = kept_ids[i]
        count[cell] = kept_counts[i]
    length[row] = len(kept_ids)


def moved_rows(mapping: np.ndarray, array: np.ndarray) -> np.ndarray:
    """``array`` with row ``r`` moved to row ``mapping[r]`` (-1: dropped), the rest zero; as
    many rows as before (ids renumbered, :func:`renumbered`).

    >>> moved_rows(np.array([0, -1, 1]), np.array([5.0, 6.0, 7.0, 8.0])).tolist()
    [5.0, 7.0, 0.0, 0.0]
    """
    out = np.zeros_like(array)
    rows = min(len(mapping), len(array))
    kept = np.flatnonzero(mapping[:rows] >= 0)
    out[mapping[kept]] = array[kept]
    return out


def renumbered(
    mapping: np.ndarray,
    neighbour: np.ndarray,
    values: np.ndarray,
    start: np.ndarray,
    sizes: np.ndarray,
    length: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The pool with its ids renumbered by ``mapping`` (old id -> new id, -1: dropped): row
    ``r`` becomes row ``mapping[r]``, and each neighbour ``n`` in it ``mapping[n]``; dropped rows
    and neighbours go. ``mapping`` keeps the order of the ids (a row's neighbours with equal
    values keep their order of ids). Returns ``(neighbour, values, start, sizes, length,
    used)``, new arrays of the old sizes.

    >>> neighbour, values = np.array([EMPTY] * 8 + [2, 0] + [EMPTY] * 6), np.arange(16.0)
    >>> start, sizes, length = np.array([0, 8, 0]), np.array([0, 8, 0]), np.array([0, 2, 0])
    >>> out = renumbered(np.array([0, -1, 1]), neighbour, values, start, sizes, length)
    >>> out[0][:8].tolist(), out[1][out[0] == 1].tolist()  # row 1 gone: nothing left
    ([-1, -1, -1, -1, -1, -1, -1, -1], [])
    >>> n, v, s, z, l, used = renumbered(np.array([-1, 0, 1]), neighbour, values, start, sizes,
    ...                                  length)  # row 1 -> 0, its neighbour 2 -> 1, 0 gone
    >>> s.tolist(), z.tolist(), l.tolist(), v[n == 1].tolist(), used.tolist()
    ([0, 0, 0], [8, 0, 0], [1, 0, 0], [8.0], [8])
    """
    out_neighbour = np.full(len(neighbour), EMPTY, neighbour.dtype)
    out_values = np.zeros_like(values)
    out_start, out_sizes = np.zeros_like(start), np.zeros_like(sizes)
    out_length = np.zeros_like(length)
    used = _renumber(
        mapping, min(len(mapping), len(sizes)), neighbour, values, start, sizes,
        out_neighbour, out_values, out_start, out_sizes, out_length,
    )  # fmt: skip
    return out_neighbour, out_values, out_start, out_sizes, out_length, np.array([used])


@compiled
def _renumber(
    mapping: np.ndarray,
    rows: int,
    neighbour: np.ndarray,
    values: np.ndarray,
    start: np.ndarray,
    sizes: np.ndarray,
    out_neighbour: np.ndarray,
    out_values: np.ndarray,
    out_start: np.ndarray,
    out_sizes: np.ndarray,
    out_length: np.ndarray,
) -> int:
    """:func:`renumbered`'s rows, rehashed into blocks in row order; returns the cells used.
    A block never grows (a row keeps at most its neighbours), so the old pool's size holds."""
    used = 0
    ids = len(mapping)
    for r in range(rows):
        new = mapping[r]
        if new < 0 or sizes[r] == 0:
            continue
        n = 0
        for c in range(start[r], start[r] + sizes[r]):
            j = neighbour[c]
            if j != EMPTY and j < ids and mapping[j] >= 0:
                n += 1
        if n == 0:
            continue
        size = block_for(n)
        out_start[new], out_sizes[new], out_length[new] = used, size, n
        for c in range(start[r], start[r] + sizes[r]):
            j = neighbour[c]
            if j != EMPTY and j < ids and mapping[j] >= 0:
                cell = locate(mapping[j], used, size, out_neighbour)
                out_neighbour[cell] = mapping[j]
                out_values[cell] = values[c]
        used += size
    return used
