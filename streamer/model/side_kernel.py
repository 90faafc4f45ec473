"""One side's terms of the factorization machine, compiled: the vectors the index holds.

For sides laid out as parts (an item's in :class:`~streamer.model.part_store.PartStore`, a
user's and context's as :class:`~streamer.model.sgd_kernel.Parts`), over their learned
features alone: the linear terms and the pairwise terms inside the side (``b_i`` for an item)
and ``sum x_f v_f`` (``e_i``, or the query ``q``); the index holds ``[b_i, e_i]`` and is
searched with ``[1, q]`` (see :mod:`streamer.model.recmodel`).

Examples
--------
>>> import numpy as np
>>> w, v = np.array([0.5, 1.0]), np.array([[1.0, 0.0], [2.0, 1.0]])
>>> learned = np.array([True, True])
>>> rows, xs = np.array([0, 1]), np.ones(2)
>>> bias, total = np.zeros(1), np.zeros((1, 2))
>>> side_sums(w, v, learned, rows, xs, np.array([0]), np.array([2]), np.array([0]), bias, total)
>>> bias.tolist(), total.tolist()  # 0.5 + 1.0 + <v0, v1> = 1.5 + 2.0
([3.5], [[3.0, 1.0]])
>>> rows = np.array([0, -1])  # a feature never seen: nothing, not the table's last row
>>> side_sums(w, v, learned, rows, xs, np.array([0]), np.array([2]), np.array([0]), bias, total)
>>> bias.tolist(), total.tolist()
([0.5], [[1.0, 0.0]])
"""

from __future__ import annotations

import numpy as np

from streamer.jit import compiled


@compiled
def side_sums(
    weights: np.ndarray,
    latents: np.ndarray,
    learned: np.ndarray,
    rows: np.ndarray,
    xs: np.ndarray,
    starts: np.ndarray,
    stops: np.ndarray,
    parts: np.ndarray,
    bias_out: np.ndarray,
    total_out: np.ndarray,
) -> None:
    """Per ``parts[i]`` (``rows[starts[p]:stops[p]]`` and its ``xs``), skipping rows that
    are -1 (a feature never seen) or not ``learned``: ``bias_out[i]`` = linear + pairwise
    terms, ``total_out[i]`` = sum x v."""
    k = latents.shape[1]
    for i in range(len(parts)):
        p = parts[i]
        linear = 0.0
        squares = 0.0
        total_out[i, :] = 0.0
        for j in range(starts[p], stops[p]):
            r = rows[j]
            if r < 0 or not learned[r]:
                continue
            x = xs[j]
            linear += x * weights[r]
            for f in range(k):
                xv = x * latents[r, f]
                total_out[i, f] += xv
                squares += xv * xv
        dot = 0.0
        for f in range(k):
            dot += total_out[i, f] * total_out[i, f]
        bias_out[i] = linear + 0.5 * (dot - squares)


def warm_up() -> None:
    """Compile (or load from numba's cache) now, not in the first batch."""
    zero, one = np.zeros(1, np.int64), np.ones(1, np.int64)
    weights, latents, learned = np.zeros(1), np.zeros((1, 1)), np.ones(1, bool)
    bias, total = np.zeros(1), np.zeros((1, 1))  # the types item_vectors passes
    side_sums(weights, latents, learned, zero, np.ones(1), zero, one, zero, bias, total)
