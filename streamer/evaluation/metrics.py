"""Streaming accumulators of accuracy, ranking quality and the audit of what is recommended."""

from __future__ import annotations

import math
from collections import Counter, deque
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

#: Lists whose diversity :class:`ListAudit` keeps (all are dropped when it holds more).
DIVERSITIES_KEPT = 65_536


class RatingMetrics:
    """RMSE and MAE of predictions made before learning, overall and over a rolling window.

    >>> m = RatingMetrics(window=2)
    >>> for y_pred, y in [(3.0, 4.0), (4.0, 4.0), (2.0, 4.0)]:
    ...     m.update(y_pred, y)
    >>> round(m.rmse, 4), round(m.mae, 4), round(m.rolling_rmse, 4)
    (1.291, 1.0, 1.4142)
    """

    def __init__(self, window: int = 5000, keep_pairs: bool = False) -> None:
        self.n = 0
        self._se = 0.0
        self._ae = 0.0
        self._recent: deque[float] = deque(maxlen=window)
        self.pairs: list[tuple[float, float]] | None = [] if keep_pairs else None

    def update(self, y_pred: float, y_true: float) -> None:
        if self.pairs is not None:
            self.pairs.append((y_pred, y_true))
        error = y_pred - y_true
        self.n += 1
        self._se += error * error
        self._ae += abs(error)
        self._recent.append(error * error)

    @property
    def rmse(self) -> float:
        return math.sqrt(self._se / self.n) if self.n else float("nan")

    @property
    def mae(self) -> float:
        return self._ae / self.n if self.n else float("nan")

    @property
    def rolling_rmse(self) -> float:
        return math.sqrt(sum(self._recent) / len(self._recent)) if self._recent else float("nan")

    def report(self) -> dict[str, Any]:
        return {"ratings": self.n, "rmse": _r(self.rmse), "mae": _r(self.mae)}


class RankingMetrics:
    """HitRate@K, NDCG@K and MRR@K of the list a user had when a positive event came in.

    One relevant item per event (the one the user chose), so NDCG is ``1 / log2(rank + 1)``
    and MRR is ``1 / rank`` on a hit, 0 otherwise.

    >>> m = RankingMetrics(k=3)
    >>> m.update("a", ["a", "b", "c"]); m.update("c", ["a", "b", "c"]); m.update("z", ["a"])
    >>> m.report()["hit_rate"], m.report()["mrr"], round(m.ndcg, 4)
    (0.6667, 0.4444, 0.5)
    """

    def __init__(self, k: int = 10, window: int = 5000) -> None:
        self.k = k
        self.n = 0
        self._hits = 0
        self._ndcg = 0.0
        self._rr = 0.0
        self._recent: deque[int] = deque(maxlen=window)

    def update(self, item: Any, shown: Sequence[Any]) -> None:
        self.n += 1
        try:
            rank = list(shown[: self.k]).index(item) + 1
        except ValueError:
            self._recent.append(0)
            return
        self._hits += 1
        self._ndcg += 1.0 / math.log2(rank + 1)
        self._rr += 1.0 / rank
        self._recent.append(1)

    @property
    def hit_rate(self) -> float:
        return self._hits / self.n if self.n else float("nan")

    @property
    def ndcg(self) -> float:
        return self._ndcg / self.n if self.n else float("nan")

    @property
    def rolling_hit_rate(self) -> float:
        return sum(self._recent) / len(self._recent) if self._recent else float("nan")

    def report(self) -> dict[str, Any]:
        return {
            "positives": self.n,
            "hit_rate": _r(self.hit_rate),
            "ndcg": _r(self.ndcg),
            "mrr": _r(self._rr / self.n if self.n else float("nan")),
        }


class ListAudit:
    """What the lists show: coverage, diversity, novelty and popularity bias.

    ``popularity`` counts interactions per item (the stream so far); ``tags`` gives each item's
    tags for intra-list diversity (1 - Jaccard similarity of tags, averaged over pairs).

    >>> audit = ListAudit(catalogue_size=4, k=2)
    >>> pop = {"a": 8, "b": 1, "c": 1}
    >>> tags = {"a": ("x",), "b": ("y",), "c": ("x",)}
    >>> audit.update(["a", "b"], pop, tags, users=10); audit.update(["a", "c"], pop, tags, users=10)
    >>> r = audit.report()
    >>> r["coverage"], r["intra_list_diversity"], r["gini"]
    (0.75, 0.5, 0.375)

    Popularity bias (Abdollahpouri et al.): the short head is the most popular items that
    together have ``HEAD_SHARE`` of the interactions, at the time of the report; the rest is
    the long tail. ``long_tail_share``: the share of the slots shown that went to the tail;
    ``long_tail_coverage``: the share of the tail ever shown; ``exposure_by_tag``: each tag's
    share of the slots shown against its share of the interactions (a ratio above 1: the
    lists favour it).

    >>> r["long_tail_share"], r["long_tail_coverage"], r["exposure_by_tag"]["y"]
    (0.5, 0.6667, {'exposure': 0.25, 'interactions': 0.1, 'ratio': 2.5})
    """

    #: The head's share of the interactions.
    HEAD_SHARE = 0.2
    #: Tags reported in ``exposure_by_tag`` (the most shown).
    TAGS_REPORTED = 30

    def __init__(self, catalogue_size: int, k: int = 10) -> None:
        self.catalogue_size = catalogue_size
        self.k = k
        self.counts: Counter[Any] = Counter()
        self.lists = 0
        self.empty = 0  # lists with no item (counted in ``lists``)
        self._diversity = 0.0
        self._novelty = 0.0
        self._popularity = 0.0
        self._shown = 0
        self._masks: dict[Any, tuple[Sequence[str], int]] = {}  # item -> (its tags, as bits)
        self._bits: dict[str, int] = {}  # tag -> its bit
        # the diversity of lists by their items' tag masks (what it depends on: never stale)
        self._diversities: dict[tuple[int, ...], float] = {}
        # the stream's interaction counts and the items' tags, as last given (live mappings)
        self._interactions: Mapping[Any, float] = {}
        self._tags: Mapping[Any, Sequence[str]] = {}

    def update(
        self,
        items: Sequence[Any],
        popularity: Mapping[Any, float],
        tags: Mapping[Any, Sequence[str]],
        users: int,
    ) -> None:
        top = list(items[: self.k])
        self.lists += 1
        self._interactions, self._tags = popularity, tags
        if not top:
            self.empty += 1
            return
        self.counts.update(top)
        # (per positive in the worker: one pass, the caches read inline)
        interactions, log2, cached_masks = popularity.get, math.log2, self._masks
        everyone = max(users, 1) + 1.0
        popularity_sum, novelty = self._popularity, self._novelty
        masks = []
        for item in top:
            count = interactions(item, 0.0)
            popularity_sum += count
            novelty -= log2(min((count + 1.0) / everyone, 1.0))
            mine = tags.get(item, ())
            cached = cached_masks.get(item)  # an item's mask, while its tags stay the same
            masks.append(
                cached[1] if cached is not None and cached[0] is mine else self._mask(item, mine)
            )
        self._popularity, self._novelty = popularity_sum, novelty
        self._shown += len(top)
        # a user's list is audited at each of their positives until it changes, and a worker's
        # batch interleaves its users: the 45 pairs of a list of 10 once per list
        key = tuple(masks)
        diversity = self._diversities.get(key)
        if diversity is None:
            if len(self._diversities) >= DIVERSITIES_KEPT:
                self._diversities.clear()
            diversity = self._diversities[key] = _diversity_of_masks(key)
        self._diversity += diversity

    def renumber(self, mapping: np.ndarray) -> None:
        """Item ids renumbered by ``mapping`` (old -> new, -1: an item dropped from the
        catalogue, out of the coverage figures too)."""
        new = mapping.tolist()
        self.counts = Counter({new[i]: n for i, n in self.counts.items() if new[i] >= 0})
        self._masks = {new[i]: m for i, m in self._masks.items() if new[i] >= 0}

    def _mask(self, item: Any, mine: Sequence[str]) -> int:
        """``item``'s tags ``mine`` as the bits of an int, kept with them (``update`` reads it
        back while the item's tags are the same object)."""
        mask = 0
        for tag in mine:
            mask |= 1 << self._bits.setdefault(tag, len(self._bits))
        self._masks[item] = (mine, mask)
        return mask

    def report(self) -> dict[str, Any]:
        shown = max(self._shown, 1)
        return {
            "lists": self.lists,
            "empty_lists": self.empty,
            "coverage": _r(len(self.counts) / self.catalogue_size if self.catalogue_size else 0),
            "intra_list_diversity": _r(self._diversity / max(self.lists - self.empty, 1)),
            "novelty_bits": _r(self._novelty / shown),
            "mean_popularity": _r(self._popularity / shown),
            "gini": _r(gini(self._all_counts())),
            **self._popularity_bias(),
        }

    def _popularity_bias(self) -> dict[str, Any]:
        interactions = self._interactions
        total = float(sum(interactions.values()))
        if not total or not self._shown:
            return {}
        head: set[Any] = set()
        running = 0.0
        for item, count in sorted(interactions.items(), key=lambda kv: (-kv[1], str(kv[0]))):
            if running >= self.HEAD_SHARE * total:
                break
            head.add(item)
            running += count
        tail_size = max(self.catalogue_size - len(head), 1)
        shown_tail = [item for item in self.counts if item not in head]
        exposure: Counter[str] = Counter()
        for item, n in self.counts.items():
            for tag in self._tags.get(item, ()):
                exposure[tag] += n
        interacted: dict[str, float] = {}
        for item, weight in interactions.items():
            for tag in self._tags.get(item, ()):
                interacted[tag] = interacted.get(tag, 0.0) + weight
        by_tag = {}
        for tag, n in exposure.most_common(self.TAGS_REPORTED):
            share, base = n / self._shown, interacted.get(tag, 0.0) / total
            by_tag[tag] = {
                "exposure": _r(share),
                "interactions": _r(base),
                "ratio": _r(share / base) if base else None,
            }
        return {
            "long_tail_share": _r(sum(self.counts[i] for i in shown_tail) / self._shown),
            "long_tail_coverage": _r(len(shown_tail) / tail_size),
            "exposure_by_tag": by_tag,
        }

    def _all_counts(self) -> list[int]:
        """Recommendation counts of every catalogue item, never-shown items as 0."""
        counts = list(self.counts.values())
        return counts + [0] * max(self.catalogue_size - len(counts), 0)


def intra_list_diversity(items: Sequence[Any], tags: Mapping[Any, Sequence[str]]) -> float:
    """Mean over pairs of ``1 - Jaccard(tags)``; items without tags count as all different.

    >>> intra_list_diversity(["a", "b", "c"], {"a": ["x"], "b": ["x"], "c": ["y"]})
    0.6667
    """
    bits: dict[str, int] = {}
    masks = [sum(1 << bits.setdefault(t, len(bits)) for t in set(tags.get(i, ()))) for i in items]
    return _diversity_of_masks(masks)


def _diversity_of_masks(masks: Sequence[int]) -> float:
    """:func:`intra_list_diversity` of items whose tags are the bits of ``masks``."""
    pairs = 0
    total = 0.0
    for i in range(len(masks)):
        a = masks[i]
        for b in masks[i + 1 :]:
            union = (a | b).bit_count()
            total += 1.0 - ((a & b).bit_count() / union if union else 0.0)
            pairs += 1
    return round(total / pairs, 4) if pairs else 0.0


def gini(counts: Sequence[float]) -> float:
    """Gini coefficient of how recommendations spread over items (0 = evenly, 1 = one item).

    >>> gini([5, 5, 5, 5]), gini([0, 0, 0, 12])
    (0.0, 0.75)
    """
    values = np.sort(np.asarray(counts, dtype=float))
    n = len(values)
    if n == 0 or values.sum() == 0:
        return 0.0
    ranks = np.arange(1, n + 1)
    return float(round((2 * (ranks * values).sum() / (n * values.sum())) - (n + 1) / n, 4))


def _r(value: float) -> float | None:
    return None if value is None or math.isnan(value) else round(float(value), 4)
