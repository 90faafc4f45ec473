"""The policy's per-list arithmetic, compiled: the stacker's features, its learning step, and
the calibrated estimates per strategy and rank (see :mod:`streamer.policy`).

A list has ~100-200 candidates and ~40 features; in numpy that is a dozen calls of a few
microseconds each per list and per positive, most of it call overhead.
"""

from __future__ import annotations

import numpy as np

from streamer.jit import compiled


@compiled
def features(
    where: np.ndarray,
    strategy: np.ndarray,
    rank: np.ndarray,
    relative: np.ndarray,
    p: np.ndarray,
    depth: int,
    candidates: int,
    first: np.ndarray,
    second: np.ndarray,
) -> np.ndarray:
    """Per candidate: ``depth * p[s, rank]`` per proposing strategy ``s``, its presence, its
    score relative to its list; per pair of strategies (``first``, ``second``), agreement."""
    n = p.shape[0]
    x = np.zeros((candidates, 3 * n + len(first)))
    for c in range(len(where)):
        s, at = strategy[c], where[c]
        x[at, s] = depth * p[s, rank[c]]
        x[at, n + s] = 1.0
        x[at, 2 * n + s] = relative[c]
    for pair in range(len(first)):
        a, b = n + first[pair], n + second[pair]
        for at in range(candidates):
            x[at, 3 * n + pair] = x[at, a] * x[at, b]
    return x


@compiled
def softmax_step(
    x: np.ndarray,
    chosen: int,
    weights: np.ndarray,
    learning_rate: float,
    n: int,
) -> None:
    """One step of the conditional logit: candidate ``chosen`` up, the others down by their
    odds; the weights of the estimates and of the relative scores stay >= 0."""
    scores = x @ weights
    odds = np.exp(scores - scores.max())
    odds /= odds.sum()
    odds[chosen] -= 1.0
    weights -= learning_rate * (odds @ x)
    for s in range(n):
        weights[s] = max(weights[s], 0.0)
        weights[2 * n + s] = max(weights[2 * n + s], 0.0)


@compiled
def estimates(
    hits: np.ndarray,
    trials: np.ndarray,
    prior: np.ndarray,
    backoff: float,
) -> np.ndarray:
    """``(hits + backoff * prior) / (trials + backoff)`` per strategy and rank, made
    non-increasing in rank."""
    out = np.empty_like(prior)
    for s in range(prior.shape[0]):
        best = np.inf
        for r in range(prior.shape[1]):
            best = min(best, (hits[s, r] + backoff * prior[s, r]) / (trials[s] + backoff))
            out[s, r] = best
    return out


@compiled
def global_prior(
    hits: np.ndarray,
    trials: np.ndarray,
    rank_prior: np.ndarray,
) -> np.ndarray:
    """The global estimate that sparse buckets back off to: ``(hits + prior) / (trials + 1)``."""
    out = np.empty_like(hits)
    for s in range(hits.shape[0]):
        for r in range(hits.shape[1]):
            out[s, r] = (hits[s, r] + rank_prior[r]) / (trials[s] + 1.0)
    return out


@compiled
def position(items: np.ndarray, item: int) -> int:
    """Where ``item`` first is in ``items``, -1 if nowhere (one pass: ``item in items`` and
    ``np.flatnonzero`` took ~1.3 µs each on a list of candidates)."""
    for c in range(len(items)):
        if items[c] == item:
            return c
    return -1


@compiled
def tally(
    hits: np.ndarray,
    trials: np.ndarray,
    bucket: int,
    items: np.ndarray,
    where: np.ndarray,
    strategy: np.ndarray,
    rank: np.ndarray,
    item: int,
) -> None:
    """The user chose ``item``: in the global bucket (0) and in ``bucket``, each strategy that
    proposed anything had a trial, each proposal of ``item`` a hit at its strategy and rank."""
    proposing = np.zeros(trials.shape[1], np.bool_)
    for c in range(len(strategy)):
        proposing[strategy[c]] = True
    for n in range(2 if bucket else 1):
        b = bucket if n else 0
        for s in range(trials.shape[1]):
            if proposing[s]:
                trials[b, s] += 1.0
        for c in range(len(where)):
            if items[where[c]] == item:
                hits[b, strategy[c], rank[c]] += 1.0
