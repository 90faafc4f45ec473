"""The policy: which strategies' candidates fill a list, learned from the stream.

Every strategy proposes a ranked list for the user. For each context bucket the policy learns,
for each strategy and each rank of its list, how often the item there was the user's next
positive: ``p[s, r] = P(next positive is at rank r of strategy s's list | bucket)``. The
candidates are then ranked by a stacker learned on the stream, a conditional logit over them
("which candidate does the user choose next"): its features per item are ``D * p[s, rank_s]``
for each strategy that proposed it, whether it did, and which pairs of strategies agree on it.
It starts as the sum of the calibrated estimates and learns how much to trust their agreement
(strategies are not independent witnesses: popular items are in every list).

Feedback is full-information: at a positive, every strategy's last list for that user is checked,
shown or not, so a strategy that is never served still earns its credit (in a live system the
shown list makes its own items likelier; a share of lists are built from Thompson samples of the
posteriors, ``exploration``, so that no strategy's estimate freezes). Sparse buckets back off to
the global estimate. Counts halve every ``half_life`` positives, so the mix follows the stream.
"""

from __future__ import annotations

import bisect
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np

from streamer import policy_kernel
from streamer.strategies.base import Scored

#: User activity bins (items in the history) that split every context bucket.
ACTIVITY_BINS = (0, 1, 2, 3, 6, 11, 31)
#: Pseudo-positives of the global estimate that a bucket's own counts must outweigh.
BACKOFF = 20.0
#: Positives a strategy must have proposed at before the policy may leave it out entirely.
EXPLORE = 100


class _Shown(NamedTuple):
    """What a user was last offered: the candidates, and per proposal (one strategy's item)
    where it is among them, its strategy, its rank and its score relative to its list."""

    bucket: int
    group: int  # the stacker that ranked it (the user's activity bin)
    items: np.ndarray
    where: np.ndarray
    strategy: np.ndarray
    rank: np.ndarray
    relative: np.ndarray
    rec_id: str


#: A re-ranker: (candidate items, their scores, k) -> positions of the list, best first.
Rerank = Callable[[np.ndarray, np.ndarray, int], np.ndarray]


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
    return bisect.bisect_right(ACTIVITY_BINS, history_length) - 1


class Blend:
    """Fuses strategies' lists by what each rank of each strategy earned in the bucket.

    Examples
    --------
    >>> blend = Blend(["a", "b"], depth=2, exploration=0.0)
    >>> for _ in range(50):  # "b"'s first item is what users pick next; "a"'s never is
    ...     _ = blend.fuse("u", "ctx", [[(1, 9.0), (2, 8.0)], [(3, 1.0), (1, 0.5)]], k=3)
    ...     blend.credit("u", 3)
    >>> fused = blend.fuse("u", "ctx", [[(1, 9.0), (2, 8.0)], [(3, 1.0), (1, 0.5)]], k=3)
    >>> fused.items[0][0], fused.strategies[0], len(fused.items)
    (3, 'b', 3)
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
        learning_rate: float = 0.02,
    ) -> None:
        self.names = list(names)
        self.depth, self.exploration, self.half_life = depth, exploration, half_life
        self.max_users = max_users
        self._buckets: dict[str, int] = {"": 0}
        self._hits = np.zeros((1, len(self.names), depth))  # bucket, strategy, rank
        # positives seen per bucket and strategy, while the strategy had proposals
        self._trials = np.zeros((1, len(self.names)))
        self._since_halving = 0
        self._last: OrderedDict[str, _Shown] = OrderedDict()
        self.clicks = dict.fromkeys(self.names, 0)  # clicks carrying a list's rec_id
        self.stale = 0  # clicks carrying the rec_id of a list no longer the user's last
        self._rng = np.random.default_rng(seed)
        n = len(self.names)
        self._pairs = [(a, b) for a in range(n) for b in range(a + 1, n)]
        self._first = np.array([a for a, _ in self._pairs], np.int64)
        self._second = np.array([b for _, b in self._pairs], np.int64)
        # the stacker's first weights: the estimates (start at 1), presence, agreement (at 0);
        # one stacker per group of users (their activity: new users and regulars differ in
        # which sources to trust), each starting from these
        self.weights = np.concatenate([np.ones(n), np.zeros(2 * n + len(self._pairs))])
        self._stackers: dict[int, np.ndarray] = {}
        self._steps: dict[int, int] = {}  # learning steps per stacker
        self.learning_rate = learning_rate
        # before any evidence: a strategy's first items are likelier than its last
        self._rank_prior = 0.01 / np.arange(1, depth + 1)
        self._lists = 0  # lists fused: the rec_id's serial number
        self.rec_prefix = ""  # of this policy's rec_ids (an A/B arm's: ``b/``)

    # -- learning -------------------------------------------------------------------------

    def credit(self, user: str, item: int, rec_id: str | None = None) -> None:
        """``user`` chose ``item``: every strategy's last list for the user earns (or not).

        A click that carries the ``rec_id`` of that list is also counted as a served click of
        the strategy that placed the item (``clicks``); an older ``rec_id`` as ``stale``."""
        last = self._last.get(user)
        if last is None:
            return
        if rec_id is not None and not rec_id.startswith(self.rec_prefix):
            rec_id = None  # another arm's list: the click is learned from, not credited here
        if rec_id is not None and rec_id != last.rec_id:
            self.stale += 1
        chosen = policy_kernel.position(last.items, item)
        if chosen >= 0:  # features only where there is something to learn from them
            x = self._features(last, self.estimates(last.bucket))
            weights = self._stacker(last.group)
            if rec_id is not None and rec_id == last.rec_id:
                owner = self._owners(x[chosen : chosen + 1], weights)[0]
                self.clicks[self.names[int(owner)]] += 1
            # a softmax step: the chosen candidate up, the others down by their odds; a
            # strategy's estimate and score count for its items, never against (within one
            # strategy's list the stacker keeps the strategy's own order)
            policy_kernel.softmax_step(x, chosen, weights, self.learning_rate, len(self.names))
            self._steps[last.group] = self._steps.get(last.group, 0) + 1
        policy_kernel.tally(
            self._hits, self._trials, last.bucket, last.items, last.where, last.strategy,
            last.rank, item,
        )  # fmt: skip
        self._since_halving += 1
        if self._since_halving >= self.half_life:
            self._since_halving = 0
            self._hits *= 0.5
            self._trials *= 0.5

    def forget(self, user: str) -> None:
        """Drop ``user``'s last candidates (an expired user)."""
        self._last.pop(user, None)

    def renumber(self, mapping: np.ndarray) -> None:
        """Item ids renumbered by ``mapping`` (old -> new, -1: dropped, never credited)."""
        for user, shown in self._last.items():
            items = np.where(shown.items >= 0, mapping[shown.items], -1).astype(np.int32)
            self._last[user] = shown._replace(items=items)

    # -- serving --------------------------------------------------------------------------

    def fuse(
        self,
        user: str,
        bucket: str,
        lists: Sequence[Scored],
        k: int,
        group: int = 0,
        rerank: Rerank | None = None,
    ) -> Fused:
        """The top ``k`` of the strategies' ``lists`` (one per strategy, in ``names`` order),
        ranked by the stacker of ``group`` (or chosen by ``rerank`` from its scores: e.g.
        :class:`streamer.diversity.Diversifier`)."""
        self._lists += 1
        rec_id = f"{self.rec_prefix}{user}:{self._lists - 1}"
        shown = self._candidates(self._bucket(bucket), group, lists, rec_id)
        self._last[user] = shown
        self._last.move_to_end(user)
        if len(self._last) > self.max_users:
            self._last.popitem(last=False)
        p = self.estimates(shown.bucket, self._rng.random() < self.exploration)
        if not len(shown.items):
            return Fused([], [], shown.rec_id)
        x = self._features(shown, p)
        weights = self._stacker(group)
        scores = x @ weights
        if rerank is None:
            order = np.argsort(-scores, kind="stable")[:k]
        else:
            order = rerank(shown.items, scores, k)
        owners = self._owners(x[order], weights)
        order, owners = self._explore(shown, order, owners)
        return Fused(
            [(int(shown.items[i]), float(scores[i])) for i in order],
            [self.names[s] for s in owners.tolist()],
            shown.rec_id,
        )

    def _explore(
        self, shown: _Shown, order: np.ndarray, owners: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """A strategy the policy has seen propose at fewer than ``EXPLORE`` positives has its
        first candidate in the list (in the last slot, if the ranking left it out): a new
        source, such as the first fresh items of a catalogue, gets seen before it is judged."""
        young = np.flatnonzero(self._trials[0] < EXPLORE)
        for s in young.tolist():
            mine = np.flatnonzero(shown.strategy == s)
            if not len(mine) or not len(order):
                continue
            first = shown.where[mine[np.argmin(shown.rank[mine])]]
            if first in order:
                continue
            order = np.append(order[:-1], first)
            owners = np.append(owners[:-1], s)
        return order, owners

    def _owners(self, x: np.ndarray, weights: np.ndarray) -> np.ndarray:
        """Per candidate, the strategy whose estimate weighs most in its score."""
        n = len(self.names)
        return np.argmax(x[:, :n] * weights[:n], axis=1)

    def _stacker(self, group: int) -> np.ndarray:
        weights = self._stackers.get(group)
        if weights is None:
            weights = self._stackers[group] = self.weights.copy()
        return weights

    def _candidates(self, bucket: int, group: int, lists: Sequence[Scored], rec_id: str) -> _Shown:
        """The strategies' lists as candidates: each distinct item once, in first-proposed
        order, and per proposal its strategy, rank and score relative to its list."""
        strategy: list[int] = []
        relative: list[float] = []
        proposed: list[int] = []
        for s, scored in enumerate(lists):
            top = scored[: self.depth]
            if not top:
                continue
            first, last = top[0][1], top[-1][1]
            spread = first - last
            strategy += [s] * len(top)
            proposed += [item for item, _ in top]
            relative += [(v - last) / spread if spread > 0 else 1.0 for _, v in top]
        ranks = np.concatenate(
            [np.arange(min(len(c), self.depth)) for c in lists if c] or [np.zeros(0, np.int64)]
        )
        at: dict[int, int] = {}  # each distinct item: its place in first-proposed order
        for item in proposed:
            at.setdefault(item, len(at))
        # kept per user until their next positive: the narrowest types that hold the values
        narrow = np.int16 if len(at) <= np.iinfo(np.int16).max else np.int32
        return _Shown(
            bucket,
            group,
            np.fromiter(at, np.int32, len(at)),  # item ids: a catalogue of < 2**31 items
            np.array([at[item] for item in proposed], narrow),
            np.array(strategy, np.int8),
            ranks.astype(np.int16),
            np.array(relative, np.float32),
            rec_id,
        )

    def _features(self, shown: _Shown, p: np.ndarray) -> np.ndarray:
        """The stacker's features of each candidate: per strategy ``D * p[s, rank]``,
        presence, and the score relative to its list (1 first, 0 last); per pair of
        strategies, agreement."""
        return policy_kernel.features(
            shown.where, shown.strategy, shown.rank, shown.relative, p, self.depth,
            len(shown.items), self._first, self._second,
        )  # fmt: skip

    def estimates(self, bucket: int, sample: bool = False) -> np.ndarray:
        """``p[strategy, rank]`` of a bucket, backed off to the global estimate, and never
        larger at a rank than at the ranks before it (a strategy's own order is trusted: deep
        ranks are rarely hit, and their noise must not lift them over the first)."""
        if sample:
            hits0, trials0 = self._hits[0] + self._rank_prior, self._trials[0][:, None]
            prior = self._rng.beta(hits0, np.maximum(trials0 - self._hits[0], 0.0) + 1.0)
        else:
            prior = policy_kernel.global_prior(self._hits[0], self._trials[0], self._rank_prior)
        hits, trials = self._hits[bucket], self._trials[bucket]
        return policy_kernel.estimates(hits, trials, prior, BACKOFF)

    def _bucket(self, key: str) -> int:
        b = self._buckets.get(key)
        if b is None:
            b = self._buckets[key] = len(self._buckets)
            self._hits = np.concatenate([self._hits, np.zeros((1, *self._hits.shape[1:]))])
            self._trials = np.concatenate([self._trials, np.zeros((1, len(self.names)))])
        return b

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

    def stacker(self) -> dict[str, float]:
        """The stackers' weights by feature name (averaged over the groups, by their steps)."""
        names = [
            *(f"p:{n}" for n in self.names),
            *(f"present:{n}" for n in self.names),
            *(f"relative:{n}" for n in self.names),
            *(f"agree:{self.names[a]}+{self.names[b]}" for a, b in self._pairs),
        ]
        weights = self.weights
        if self._steps:
            steps = np.array(list(self._steps.values()), float)
            stacked = np.array([self._stacker(g) for g in self._steps])
            weights = steps @ stacked / steps.sum()
        return {n: round(float(w), 4) for n, w in zip(names, weights, strict=True)}

    def hit_rates(self) -> dict[str, float | None]:
        """Each strategy's estimated HitRate@depth over every bucket (the global estimate);
        None for a strategy that never proposed anything at a positive."""
        rate = self.estimates(0).sum(axis=1)
        seen = self._trials[0] > 0
        return {
            n: round(float(v), 4) if s else None
            for n, v, s in zip(self.names, rate, seen, strict=True)
        }
