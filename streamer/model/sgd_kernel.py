"""The factorization machine's SGD step, compiled: events one after another, in one call.

A micro-batch is laid out as events, each with a shared part (the user side: user and
context features) and one or more samples, each sample its event's shared part plus an own
part (an item side) from a pool of parts: a rating is one sample, a click its positive and its
sampled negatives. Parts are rows of the parameter table and their values, end to end, so the
caller never copies a user side once per negative. Events are learned in order, each by one
SGD step over its samples with every gradient taken at the same parameters (mini-batch SGD
within an event, plain SGD across events): for a single sample, River's ``learn_one`` exactly.
A step whose output or update is not finite is not applied; the caller re-initialises its rows.
With ``max_norm > 0`` every row a step touched is held to ``|w_r| <= max_norm`` and
``||v_r|| <= max_norm`` after it (a max-norm constraint, Srebro et al. 2005): a feature seen on
every event (a context value) cannot run away however many steps it takes, and float32 item
and query vectors cannot overflow. Each clamp is counted.

Examples
--------
>>> import numpy as np
>>> w, v, seen = np.zeros(2), np.full((2, 1), 0.1), np.zeros(2, bool)
>>> user, item = Parts.of([(np.array([0]), np.ones(1))]), Parts.of([(np.array([1]), np.ones(1))])
>>> raw, ok, clamped = np.zeros(1), np.zeros(1, bool), np.zeros(1, np.int64)
>>> b = sgd_events(w, v, seen, 0.0, *user, *item, np.array([0]), np.array([0, 1]),
...     np.array([1.0]), np.ones(1), 0.1, 0.1, 0.1, 0.0, 0.0, 5.0, SQUARED, 1.0, 1.0, 0.0,
...     raw, ok, clamped)
>>> raw.round(3).tolist(), ok.tolist(), round(b, 3)  # 0 + 0 + 0.1 * 0.1 before the step
([0.01], [True], 0.198)
>>> _ = sgd_events(w, v, seen, 0.0, *user, *item, np.array([0]), np.array([0, 1]),
...     np.array([100.0]), np.ones(1), 0.1, 0.1, 0.1, 0.0, 0.0, 5.0, SQUARED, 1.0, 1.0, 0.15,
...     raw, ok, clamped)
>>> float(np.abs(w).max()) <= 0.15, float(np.linalg.norm(v, axis=1).max()) <= 0.15 + 1e-12
(True, True)
>>> int(clamped[0]) > 0
True
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

from streamer.jit import compiled

SQUARED, LOG = 0, 1  # the losses compiled: River's Squared and Log


class Parts(NamedTuple):
    """Feature parts: part p is ``rows[starts[p]:stops[p]]`` and its values (may be empty).

    >>> p = Parts.of([(np.array([3, 4]), np.ones(2)), (np.array([], np.int64), np.ones(0))])
    >>> p.starts.tolist(), p.stops.tolist(), p.rows_of(0).tolist()
    ([0, 2], [2, 2], [3, 4])
    """

    rows: np.ndarray
    xs: np.ndarray
    starts: np.ndarray
    stops: np.ndarray

    @classmethod
    def of(cls, parts: Sequence[tuple[np.ndarray, np.ndarray]]) -> Parts:
        """Parts laid end to end."""
        bounds = np.zeros(len(parts) + 1, np.int64)
        np.cumsum([len(rows) for rows, _ in parts], out=bounds[1:])
        if not parts:
            return cls(np.zeros(0, np.int64), np.zeros(0), bounds[:-1], bounds[1:])
        rows = np.concatenate([rows for rows, _ in parts]).astype(np.int64, copy=False)
        xs = np.concatenate([xs for _, xs in parts]).astype(float, copy=False)
        return cls(rows, xs, bounds[:-1], bounds[1:])

    def rows_of(self, part: int) -> np.ndarray:
        return self.rows[self.starts[part] : self.stops[part]]

    def rows_in(self, parts: np.ndarray) -> np.ndarray:
        """The rows of ``parts``, end to end.

        >>> p = Parts.of([(np.array([3, 4]), np.ones(2)), (np.array([5]), np.ones(1))])
        >>> p.rows_in(np.array([1, 0, 1])).tolist()
        [5, 3, 4, 5]
        """
        lengths = self.stops[parts] - self.starts[parts]
        ends = np.cumsum(lengths)
        at = np.arange(int(ends[-1]) if len(ends) else 0) + np.repeat(
            self.starts[parts] - (ends - lengths), lengths
        )
        return self.rows[at]


@compiled
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


@compiled
def sgd_events(
    weights: np.ndarray,
    latents: np.ndarray,
    learned: np.ndarray,
    intercept: float,
    shared_rows: np.ndarray,
    shared_xs: np.ndarray,
    shared_starts: np.ndarray,
    shared_stops: np.ndarray,
    own_rows: np.ndarray,
    own_xs: np.ndarray,
    own_starts: np.ndarray,
    own_stops: np.ndarray,
    sample_own: np.ndarray,
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
    max_norm: float,
    raw_out: np.ndarray,
    ok_out: np.ndarray,
    clamped_out: np.ndarray,
) -> float:
    """Learn every event in order; returns the new intercept.

    Part p of ``shared_*`` is ``shared_rows[shared_starts[p]:shared_stops[p]]`` (and its
    ``shared_xs``), the same for ``own_*``. Event e's shared part is part e; its samples
    are ``event_starts[e]`` up to ``event_starts[e + 1]``, sample s made of that shared part
    and part ``sample_own[s]`` of ``own_*``. Per sample: ``ys``, ``ws`` (sample weight).
    The learning rates are constants. Fills ``raw_out`` (each sample's raw output before its
    event's step) and ``ok_out`` (per event, whether its step was finite and applied); adds
    the clamps of ``max_norm`` to ``clamped_out[0]``. Mutates ``weights``, ``latents`` and
    ``learned``.
    """
    k = latents.shape[1]
    n_events = len(event_starts) - 1
    widest = 0
    for e in range(n_events):
        width = 0
        shared = shared_stops[e] - shared_starts[e]
        for s in range(event_starts[e], event_starts[e + 1]):
            width += shared + own_stops[sample_own[s]] - own_starts[sample_own[s]]
        widest = max(widest, width)
    step_rows = np.empty(widest, np.int64)
    w_step = np.empty(widest)
    v_step = np.empty((widest, k))
    total = np.empty(k)
    for e in range(n_events):
        g_sum = 0.0
        finite = True
        i = 0  # entries of this event's step so far
        for s in range(event_starts[e], event_starts[e + 1]):
            # the sample's entries: its event's shared part, then its own part
            parts = (
                (shared_rows, shared_xs, shared_starts[e], shared_stops[e]),
                (own_rows, own_xs, own_starts[sample_own[s]], own_stops[sample_own[s]]),
            )
            # forward at the parameters before this event's step
            raw = intercept
            squares = 0.0
            total[:] = 0.0
            for rows, xs, first, last in parts:
                for j in range(first, last):
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
            for rows, xs, first, last in parts:
                for j in range(first, last):
                    r, x = rows[j], xs[j]
                    step_rows[i] = r
                    w_step[i] = lr_weight * (g * x + l2_weight * weights[r])
                    for f in range(k):
                        step = lr_latent * (
                            g * x * (total[f] - x * latents[r, f]) + l2_latent * latents[r, f]
                        )
                        v_step[i, f] = step
                        finite = finite and math.isfinite(step)
                    i += 1
        ok_out[e] = finite
        if not finite:
            continue
        for j in range(i):
            r = step_rows[j]
            weights[r] -= w_step[j]
            for f in range(k):
                latents[r, f] -= v_step[j, f]
            learned[r] = True
        if max_norm > 0.0:
            for j in range(i):
                r = step_rows[j]
                if abs(weights[r]) > max_norm:
                    weights[r] = max_norm if weights[r] > 0.0 else -max_norm
                    clamped_out[0] += 1
                norm = 0.0
                for f in range(k):
                    norm += latents[r, f] * latents[r, f]
                if norm > max_norm * max_norm:
                    scale = max_norm / math.sqrt(norm)
                    for f in range(k):
                        latents[r, f] *= scale
                    clamped_out[0] += 1
        intercept -= lr_intercept * g_sum
    return intercept


def warm_up() -> None:
    """Compile (or load from numba's cache) the step now, not in the first batch."""
    part = Parts.of([(np.zeros(1, np.int64), np.ones(1))])
    weights, latents, learned = np.zeros(1), np.zeros((1, 1)), np.zeros(1, bool)
    for loss in (SQUARED, LOG):
        sgd_events(
            weights,
            latents,
            learned,
            0.0,
            *part,
            *part,
            np.zeros(1, np.int64),
            np.array([0, 1]),
            np.ones(1),
            np.ones(1),
            0.0,
            0.0,
            0.0,
            0.0,
            0.0,
            1.0,
            loss,
            1.0,
            1.0,
            1.0,
            np.zeros(1),
            np.zeros(1, bool),
            np.zeros(1, np.int64),
        )
