"""The factorization machine's SGD step, compiled: events one after another, in one call.

A micro-batch of events is laid out as samples (rows of the parameter table and their values,
end to end) grouped by event: a rating is one sample, a click is its positive and its sampled
negatives. Events are learned in order, each by one SGD step over its samples with every
gradient taken at the same parameters (mini-batch SGD within an event, plain SGD across
events), exactly what River's ``learn_one`` would do sample by sample for a single sample.
A step whose output or update is not finite is not applied; the caller re-initialises its rows.

Examples
--------
>>> import numpy as np
>>> w, v, seen = np.zeros(2), np.full((2, 1), 0.1), np.zeros(2, bool)
>>> rows, xs = np.array([0, 1]), np.ones(2)
>>> raw, ok = np.zeros(1), np.zeros(1, bool)
>>> b = sgd_events(w, v, seen, 0.0, rows, xs, np.array([0, 2]), np.array([0, 1]),
...     np.array([1.0]), np.ones(1), 0.1, 0.1, 0.1,
...     0.0, 0.0, 5.0, SQUARED, 1.0, 1.0, raw, ok)
>>> raw.round(3).tolist(), ok.tolist(), round(b, 3)  # 0 + 0 + 0.1 * 0.1 before the step
([0.01], [True], 0.198)
"""

from __future__ import annotations

import math

import numba
import numpy as np

SQUARED, LOG = 0, 1  # the losses compiled: River's Squared and Log


@numba.njit(cache=True)
def _gradient(loss: int, y: float, raw: float, w_pos: float, w_neg: float) -> float:
    if loss == SQUARED:
        return 2.0 * (raw - y)
    sign = 1.0 if y > 0.0 else -1.0
    weight = w_pos if y > 0.0 else w_neg
    z = raw * sign
    if z > 18.0:
        return weight * math.exp(-z) * -sign
    if z < -18.0:
        return weight * -sign
    return weight * -sign / (math.exp(z) + 1.0)


@numba.njit(cache=True)
def sgd_events(
    weights: np.ndarray,
    latents: np.ndarray,
    learned: np.ndarray,
    intercept: float,
    rows: np.ndarray,
    xs: np.ndarray,
    starts: np.ndarray,
    event_starts: np.ndarray,
    ys: np.ndarray,
    ws: np.ndarray,
    lr_weight: float,
    lr_latent: float,
    lr_intercept: float,
    l2_weight: float,
    l2_latent: float,
    clip: float,
    loss: int,
    w_pos: float,
    w_neg: float,
    raw_out: np.ndarray,
    ok_out: np.ndarray,
) -> float:
    """Learn every event in order; returns the new intercept.

    ``starts[s]`` is where sample s begins in ``rows``/``xs`` (``starts[-1]`` = their length),
    ``event_starts[e]`` the first sample of event e (one more entry than events). Per sample:
    ``ys``, ``ws`` (sample weight). The learning rates are constants. Fills ``raw_out``
    (each sample's raw output before its event's step) and ``ok_out`` (per event, whether
    its step was finite and applied). Mutates ``weights``, ``latents`` and ``learned``.
    """
    k = latents.shape[1]
    n_events = len(event_starts) - 1
    widest = 0
    for e in range(n_events):
        widest = max(widest, starts[event_starts[e + 1]] - starts[event_starts[e]])
    w_step = np.empty(widest)
    v_step = np.empty((widest, k))
    total = np.empty(k)
    for e in range(n_events):
        first, last = event_starts[e], event_starts[e + 1]
        base = starts[first]
        g_sum = 0.0
        finite = True
        for s in range(first, last):
            # forward at the parameters before this event's step
            raw = intercept
            squares = 0.0
            total[:] = 0.0
            for j in range(starts[s], starts[s + 1]):
                r, x = rows[j], xs[j]
                raw += x * weights[r]
                for f in range(k):
                    xv = x * latents[r, f]
                    total[f] += xv
                    squares += xv * xv
            dot = 0.0
            for f in range(k):
                dot += total[f] * total[f]
            raw += 0.5 * (dot - squares)
            raw_out[s] = raw
            g = _gradient(loss, ys[s], raw, w_pos, w_neg)
            g = min(max(g, -clip), clip) * ws[s]
            g_sum += g
            finite = finite and math.isfinite(raw) and math.isfinite(g)
            # d raw / d w_r = x;  d raw / d v_r = x (total - x v_r)
            for j in range(starts[s], starts[s + 1]):
                r, x = rows[j], xs[j]
                i = j - base
                w_step[i] = lr_weight * (g * x + l2_weight * weights[r])
                for f in range(k):
                    step = lr_latent * (
                        g * x * (total[f] - x * latents[r, f]) + l2_latent * latents[r, f]
                    )
                    v_step[i, f] = step
                    finite = finite and math.isfinite(step)
        ok_out[e] = finite
        if not finite:
            continue
        for j in range(base, starts[last]):
            r, i = rows[j], j - base
            weights[r] -= w_step[i]
            for f in range(k):
                latents[r, f] -= v_step[i, f]
            learned[r] = True
        intercept -= lr_intercept * g_sum
    return intercept
