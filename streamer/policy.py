"""The policy: which strategies' candidates fill a list, learned from the stream.

Every strategy proposes a ranked list for the user. For each context bucket the policy learns,
for each strategy and each rank of its list, how often the item there was the user's next
positive: ``p[s, r] = P(next positive is at rank r of strategy s's list | bucket)``. The list a
user is shown is the candidates ordered by ``1 - prod_s (1 - p[s, rank_s(item)])``, the chance
that the item is the next positive if strategies were independent witnesses (noisy-OR).

Feedback is full-information: at a positive, every strategy's last list for that user is checked,
shown or not, so a strategy that is never served still earns its credit (in a live system the
shown list makes its own items likelier; a share of lists are built from Thompson samples of the
posteriors, ``exploration``, so that no strategy's estimate freezes). Sparse buckets back off to
the global estimate. Counts halve every ``half_life`` positives, so the mix follows the stream.
"""

from __future__ import annotations

import itertools
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from streamer.strategies.base import Scored

#: User activity bins (items in the history) that split every context bucket.
ACTIVITY_BINS = (0, 1, 2, 3, 6, 11, 31)
#: Pseudo-positives of the global estimate that a bucket's own counts must outweigh.
BACKOFF = 20.0


@dataclass(frozen=True)
class Fused:
    """A fused list: items best first, each with its estimate and the strategy that placed it."""

    items: list[tuple[int, float]]
    strategies: list[str]
    rec_id: str


def activity(history_length: int) -> int:
    """The activity bin of a user with ``history_length`` items.

    >>> [activity(n) for n in (0, 1, 2, 5, 6, 40)]
    [0, 1, 2, 3, 4, 6]
    """
    return int(np.searchsorted(ACTIVITY_BINS, history_length, side="right")) - 1


class Blend:
    """Fuses strategies' lists by what each rank of each strategy earned in the bucket.

    Examples
    --------
    >>> blend = Blend(["a", "b"], depth=2, exploration=0.0)
    >>> for _ in range(50):  # "b"'s first item is what users pick next; "a"'s never is
    ...     _ = blend.fuse("u", "ctx", [[(1, 9.0), (2, 8.0)], [(3, 1.0), (1, 0.5)]], k=3)
    ...     blend.credit("u", 3)
    >>> fused = blend.fuse("u", "ctx", [[(1, 9.0), (2, 8.0)], [(3, 1.0), (1, 0.5)]], k=3)
    >>> [item for item, _ in fused.items], fused.strategies
    ([3, 1, 2], ['b', 'a', 'a'])
    >>> blend.mix()["ctx"]["b"] > 0.9
    True
    """

    def __init__(
        self,
        names: Sequence[str],
        depth: int = 20,
        exploration: float = 0.1,
        half_life: int = 20_000,
        max_users: int = 200_000,
        seed: int = 0,
    ) -> None:
        self.names = list(names)
        self.depth, self.exploration, self.half_life = depth, exploration, half_life
        self.max_users = max_users
        self._buckets: dict[str, int] = {"": 0}
        self._hits = np.zeros((1, len(self.names), depth))  # bucket, strategy, rank
        self._trials = np.zeros(1)  # positives seen per bucket
        self._since_halving = 0
        self._last: OrderedDict[str, tuple[int, np.ndarray, str]] = OrderedDict()
        self._rng = np.random.default_rng(seed)
        # before any evidence: a strategy's first items are likelier than its last
        self._rank_prior = 0.01 / np.arange(1, depth + 1)
        self._ids = itertools.count()

    # -- learning -------------------------------------------------------------------------

    def credit(self, user: str, item: int) -> None:
        """``user`` chose ``item``: every strategy's last list for the user earns (or not)."""
        last = self._last.get(user)
        if last is None:
            return
        bucket, lists, _ = last
        hit_strategy, hit_rank = np.nonzero(lists == item)
        for b in {0, bucket}:
            self._trials[b] += 1.0
            self._hits[b, hit_strategy, hit_rank] += 1.0
        self._since_halving += 1
        if self._since_halving >= self.half_life:
            self._since_halving = 0
            self._hits *= 0.5
            self._trials *= 0.5

    # -- serving --------------------------------------------------------------------------

    def fuse(self, user: str, bucket: str, lists: Sequence[Scored], k: int) -> Fused:
        """The top ``k`` of the strategies' ``lists`` (one per strategy, in ``names`` order)."""
        b = self._bucket(bucket)
        ranks = np.full((len(self.names), self.depth), -1, np.int64)
        for s, scored in enumerate(lists):
            for r, (item, _) in enumerate(scored[: self.depth]):
                ranks[s, r] = item
        self._remember(user, b, ranks)
        p = self.estimates(b, sample=self._rng.random() < self.exploration)
        best: dict[int, tuple[float, float, int]] = {}  # item -> (prod(1-p), best p, strategy)
        for s, r in zip(*np.nonzero(ranks >= 0), strict=True):
            item, chance = int(ranks[s, r]), float(p[s, r])
            miss, top, owner = best.get(item, (1.0, -1.0, s))
            best[item] = (miss * (1.0 - chance), *((chance, s) if chance > top else (top, owner)))
        order = sorted(best.items(), key=lambda kv: kv[1][0])[:k]
        return Fused(
            [(item, 1.0 - miss) for item, (miss, _, _) in order],
            [self.names[owner] for _, (_, _, owner) in order],
            self._last[user][2],
        )

    def estimates(self, bucket: int, sample: bool = False) -> np.ndarray:
        """``p[strategy, rank]`` of a bucket, backed off to the global estimate."""
        hits0 = self._hits[0] + self._rank_prior
        prior = hits0 / (self._trials[0] + 1.0)
        hits, trials = self._hits[bucket], self._trials[bucket]
        if sample:
            prior = self._rng.beta(hits0, self._trials[0] - self._hits[0] + 1.0)
        return (hits + BACKOFF * prior) / (trials + BACKOFF)

    def _bucket(self, key: str) -> int:
        b = self._buckets.get(key)
        if b is None:
            b = self._buckets[key] = len(self._buckets)
            self._hits = np.concatenate([self._hits, np.zeros((1, *self._hits.shape[1:]))])
            self._trials = np.append(self._trials, 0.0)
        return b

    def _remember(self, user: str, bucket: int, ranks: np.ndarray) -> None:
        self._last[user] = (bucket, ranks, f"{user}:{next(self._ids)}")
        self._last.move_to_end(user)
        if len(self._last) > self.max_users:
            self._last.popitem(last=False)

    # -- reporting ------------------------------------------------------------------------

    def mix(self) -> dict[str, Any]:
        """Per bucket, each strategy's share of the estimated hit rate of its whole list."""
        out: dict[str, Any] = {}
        for key, b in self._buckets.items():
            rate = self.estimates(b).sum(axis=1)
            total = float(rate.sum()) or 1.0
            out[key] = {
                n: round(float(v) / total, 4) for n, v in zip(self.names, rate, strict=True)
            }
        return out

    def hit_rates(self) -> dict[str, float]:
        """Each strategy's estimated HitRate@depth over every bucket (the global estimate)."""
        rate = self.estimates(0).sum(axis=1)
        return {n: round(float(v), 4) for n, v in zip(self.names, rate, strict=True)}
