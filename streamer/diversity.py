"""Diversity re-ranking of a fused list: maximal marginal relevance (Carbonell & Goldstein 1998).

From the ``pool`` best candidates by the policy's score, the list is built greedily: each next
item maximises ``(1 - lam) * relevance - lam * (largest similarity to the items already
placed)``, relevance being the score rescaled to [0, 1] over the pool and similarity the cosine
of the ranking model's item vectors. ``lam = 0`` keeps the policy's order.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np


def mmr(
    scores: np.ndarray,
    vectors: np.ndarray,
    k: int,
    lam: float,
    popularity: np.ndarray | None = None,
) -> np.ndarray:
    """Positions into ``scores`` (best first, ``k`` of them) chosen by MMR.

    >>> scores = np.array([1.0, 0.99, 0.5])
    >>> vectors = np.array([[1.0, 0.0], [1.0, 0.01], [0.0, 1.0]])  # the first two alike
    >>> mmr(scores, vectors, 2, 0.0).tolist(), mmr(scores, vectors, 2, 0.8).tolist()
    ([0, 1], [0, 2])
    """
    n = len(scores)
    k = min(k, n)
    if lam <= 0.0 or n <= 1:
        return np.argsort(-scores, kind="stable")[:k]
    spread = float(scores.max() - scores.min())
    relevance = (scores - scores.min()) / spread if spread > 0 else np.ones(n)
    norms = np.linalg.norm(vectors, axis=1)
    unit = vectors / np.where(norms > 0, norms, 1.0)[:, None]
    similarity = unit @ unit.T
    # an item's popularity counts against it as much as its likeness to the items placed:
    # lists that are not all the catalogue's head (exposure spread over it)
    head = np.zeros(n) if popularity is None else np.log1p(popularity)
    head = head / head.max() if head.max() > 0 else head
    closest = np.full(n, -np.inf)  # largest similarity to the items placed so far
    placed = np.zeros(n, bool)
    order = np.empty(k, np.int64)
    for at in range(k):
        gain = (1.0 - lam) * relevance - lam * 0.5 * (np.where(at, closest, 0.0) + head)
        gain[placed] = -np.inf
        best = int(np.argmax(gain))
        order[at] = best
        placed[best] = True
        closest = np.maximum(closest, similarity[best])
    return order


class Diversifier:
    """An MMR re-ranker for :meth:`streamer.policy.Blend.fuse` over ``pool_factor * k``
    candidates, item vectors from ``vectors_of(items)``."""

    def __init__(
        self,
        lam: float,
        vectors_of: Callable[[np.ndarray], np.ndarray],
        popularity_of: Callable[[np.ndarray], np.ndarray] | None = None,
        pool_factor: int = 3,
    ) -> None:
        if not 0.0 <= lam <= 1.0:
            raise ValueError(f"diversity {lam}: expected 0 to 1")
        self.lam, self.vectors_of, self.pool_factor = lam, vectors_of, pool_factor
        self.popularity_of = popularity_of

    def __call__(self, items: np.ndarray, scores: np.ndarray, k: int) -> np.ndarray:
        """Positions into ``items`` / ``scores``: the list of ``k``, best first."""
        pool = np.argsort(-scores, kind="stable")[: self.pool_factor * k]
        if self.lam <= 0.0 or len(pool) <= 1:
            return pool[:k]
        popularity = self.popularity_of(items[pool]) if self.popularity_of else None
        chosen = mmr(scores[pool], self.vectors_of(items[pool]), k, self.lam, popularity)
        return pool[chosen]
