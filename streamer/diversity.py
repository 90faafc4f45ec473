"""Re-ranking a fused list: for diversity, maximal marginal relevance (Carbonell & Goldstein
1998); for calibration, Steck's calibrated recommendations (2018).

Diversity (``STREAMREC_DIVERSITY``, :func:`mmr`): from the ``pool`` best candidates by the
policy's score, the list is built greedily, each next item maximising ``(1 - lam) * relevance
- lam / 2 * (largest cosine of item vectors to the items placed + log popularity)``, relevance
being the score rescaled to [0, 1] over the pool. ``lam = 0`` keeps the policy's order.

Calibration (``STREAMREC_CALIBRATION``, :func:`calibrate`): each tag's share of the list kept
close to its share of the user's history: a user who watches 70% drama and 30% comedy gets
about that, not the all-drama list that ranking by relevance alone tends to give.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import numpy as np

from streamer.jit import compiled


def _best(scores: np.ndarray, n: int) -> np.ndarray:
    """Positions of the ``n`` best ``scores``, best first (ties: the earlier first)."""
    return np.argsort(-scores, kind="stable")[:n]


def _tagged_pool(
    items: np.ndarray, scores: np.ndarray, n: int, tags_of: Callable[[int], Sequence[str]]
) -> tuple[np.ndarray, list[Sequence[str]]]:
    """Positions of the ``n`` best ``scores`` (:func:`_best`) and their items' tags."""
    pool = _best(scores, n)
    return pool, [tags_of(int(i)) for i in items[pool]]


def _relevance(scores: np.ndarray) -> np.ndarray:
    """``scores`` rescaled to [0, 1] (all 1 when they are all equal)."""
    spread = float(scores.max() - scores.min())
    return (scores - scores.min()) / spread if spread > 0 else np.ones(len(scores))


def _kl(p: np.ndarray, q: np.ndarray, alpha: float) -> np.ndarray:
    """``KL(p || (1 - alpha) q + alpha p)`` for each row of ``q`` (over ``p``'s support)."""
    wanted = p > 0
    mixed = (1.0 - alpha) * q[:, wanted] + alpha * p[wanted]
    return (p[wanted] * np.log(p[wanted] / mixed)).sum(axis=1)


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
        return _best(scores, k)
    norms = np.linalg.norm(vectors, axis=1)
    unit = np.ascontiguousarray(vectors / np.where(norms > 0, norms, 1.0)[:, None], np.float64)
    # an item's popularity counts against it as much as its likeness to the items placed:
    # lists that are not all the catalogue's head (exposure spread over it)
    head = np.zeros(n) if popularity is None else np.log1p(np.asarray(popularity, np.float64))
    head = head / head.max() if head.max() > 0 else head
    return _greedy(_relevance(np.asarray(scores, np.float64)), unit, head, k, float(lam))


@compiled
def _greedy(
    relevance: np.ndarray, unit: np.ndarray, head: np.ndarray, k: int, lam: float
) -> np.ndarray:  # pragma: no cover - compiled
    """MMR's greedy loop: each next position maximises ``(1 - lam) * relevance - lam / 2 *
    (largest cosine to the placed + head)`` (the first: no cosine term), the earliest on ties."""
    n, dim = unit.shape
    closest = np.zeros(n)  # largest similarity to the items placed so far (none: 0)
    placed = np.zeros(n, np.bool_)
    order = np.empty(k, np.int64)
    for at in range(k):
        best, best_gain = -1, -np.inf
        for i in range(n):
            if not placed[i]:
                gain = (1.0 - lam) * relevance[i] - lam * 0.5 * (closest[i] + head[i])
                if best < 0 or gain > best_gain:  # (a NaN gain: the first unplaced)
                    best, best_gain = i, gain
        order[at] = best
        placed[best] = True
        for i in range(n):
            if not placed[i]:
                dot = 0.0
                for d in range(dim):
                    dot += unit[best, d] * unit[i, d]
                if at == 0 or dot > closest[i]:
                    closest[i] = dot
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
        pool = _best(scores, self.pool_factor * k)
        if self.lam <= 0.0 or len(pool) <= 1:
            return pool[:k]
        popularity = self.popularity_of(items[pool]) if self.popularity_of else None
        chosen = mmr(scores[pool], self.vectors_of(items[pool]), k, self.lam, popularity)
        return pool[chosen]


def cap_per_tag(scores: np.ndarray, tags: Sequence[Sequence[str]], k: int, cap: int) -> np.ndarray:
    """Positions into ``scores`` (``k``, best first): the best by score, passing over an item
    one of whose tags already has ``cap`` items in the list; the best passed over fill what is
    left if too few pass. A cheaper alternative to MMR: one pass, no item vectors.

    >>> scores = np.array([1.0, 0.9, 0.8, 0.7])
    >>> tags = [["drama"], ["drama"], ["drama"], ["comedy"]]
    >>> cap_per_tag(scores, tags, 3, 2).tolist(), cap_per_tag(scores, tags, 3, 1).tolist()
    ([0, 1, 3], [0, 3, 1])
    """
    order = _best(scores, len(scores))
    placed: dict[str, int] = {}
    chosen: list[int] = []
    passed: list[int] = []
    for position in order.tolist():
        if len(chosen) == k:
            break
        mine = tags[position]
        if any(placed.get(tag, 0) >= cap for tag in mine):
            passed.append(position)
            continue
        chosen.append(position)
        for tag in mine:
            placed[tag] = placed.get(tag, 0) + 1
    chosen += passed[: k - len(chosen)]
    return np.array(chosen, np.int64)


class TagCap:
    """A re-ranker for :meth:`streamer.policy.Blend.fuse`: at most ``cap`` items per tag
    (:func:`cap_per_tag`) from the ``pool_factor * k`` best; ``tags_of(item)``."""

    def __init__(
        self, cap: int, tags_of: Callable[[int], Sequence[str]], pool_factor: int = 3
    ) -> None:
        if cap < 1:
            raise ValueError(f"at most {cap} items per tag: expected 1 or more")
        self.cap, self.tags_of, self.pool_factor = cap, tags_of, pool_factor

    def __call__(self, items: np.ndarray, scores: np.ndarray, k: int) -> np.ndarray:
        pool, tags = _tagged_pool(items, scores, self.pool_factor * k, self.tags_of)
        return pool[cap_per_tag(scores[pool], tags, k, self.cap)]


def tag_distribution(tags: Sequence[Sequence[str]]) -> dict[str, float]:
    """The tags' shares over items (each item's unit split over its tags), as Steck's p(g|u).

    >>> tag_distribution([["drama"], ["drama", "war"]])
    {'drama': 0.75, 'war': 0.25}
    """
    shares: dict[str, float] = {}
    tagged = [t for t in tags if t]
    for item_tags in tagged:
        for tag in item_tags:
            shares[tag] = shares.get(tag, 0.0) + 1.0 / len(item_tags) / len(tagged)
    return shares


def miscalibration(
    target: Mapping[str, float], listed: Mapping[str, float], alpha: float = 0.01
) -> float:
    """``KL(target || listed, mixed with alpha of target)``: what :func:`calibrate` lowers.

    >>> miscalibration({"drama": 0.5, "comedy": 0.5}, {"drama": 0.5, "comedy": 0.5})
    0.0
    >>> round(miscalibration({"drama": 0.5, "comedy": 0.5}, {"drama": 1.0}), 3)
    1.959
    """
    names = sorted(target)
    p = np.array([target[name] for name in names])
    q = np.array([[listed.get(name, 0.0) for name in names]])
    return float(_kl(p, q, alpha)[0])


def calibrate(
    scores: np.ndarray,
    tags: Sequence[Sequence[str]],
    target: Mapping[str, float],
    k: int,
    lam: float,
    alpha: float = 0.01,
) -> np.ndarray:
    """Positions into ``scores`` (``k``, best first) chosen greedily (Steck 2018, "Calibrated
    recommendations"): each next item maximises ``(1 - lam) * (summed relevance) - lam *
    KL(target || the list's tag shares)``, the list's shares mixed with ``alpha`` of the target
    (KL stays finite). Relevance is the score rescaled to [0, 1].

    >>> scores = np.array([1.0, 0.99, 0.98, 0.5])
    >>> tags = [["drama"], ["drama"], ["drama"], ["comedy"]]
    >>> calibrate(scores, tags, {"drama": 0.5, "comedy": 0.5}, 2, 0.0).tolist()
    [0, 1]
    >>> calibrate(scores, tags, {"drama": 0.5, "comedy": 0.5}, 2, 0.5).tolist()
    [0, 3]
    """
    n, k = len(scores), min(k, len(scores))
    if lam <= 0.0 or not target or n <= 1:
        return _best(scores, k)
    names = sorted(set(target) | {t for item in tags for t in item})
    column = {name: c for c, name in enumerate(names)}
    shares = np.zeros((n, len(names)))
    for row, item_tags in enumerate(tags):
        for tag in item_tags:
            shares[row, column[tag]] += 1.0 / len(item_tags)
    p = np.array([target.get(name, 0.0) for name in names])
    relevance = _relevance(scores)
    placed = np.zeros(n, bool)
    total = np.zeros(len(names))  # the placed items' tag shares, summed
    gained = 0.0
    order = np.empty(k, np.int64)
    for at in range(k):
        q = (total + shares) / (at + 1)  # each candidate's list, were it placed next
        gain = (1.0 - lam) * (gained + relevance) - lam * _kl(p, q, alpha)
        gain[placed] = -np.inf
        best = int(np.argmax(gain))
        order[at], placed[best] = best, True
        total += shares[best]
        gained += relevance[best]
    return order


class Calibrator:
    """A calibrating re-ranker for one user (``target``: their history's tag shares), over the
    policy's best ``pool_factor * k`` candidates; ``tags_of(item)`` gives an item's tags."""

    def __init__(
        self,
        lam: float,
        target: Mapping[str, float],
        tags_of: Callable[[int], Sequence[str]],
        pool_factor: int = 3,
    ) -> None:
        self.lam, self.target, self.tags_of, self.pool_factor = lam, target, tags_of, pool_factor

    def __call__(self, items: np.ndarray, scores: np.ndarray, k: int) -> np.ndarray:
        pool, tags = _tagged_pool(items, scores, self.pool_factor * k, self.tags_of)
        return pool[calibrate(scores[pool], tags, self.target, k, self.lam)]
