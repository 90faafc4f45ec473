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
