"""Neural: a two-tower model's top-K (``streamer.model.two_tower``), searched with FAISS.

The user tower reads the user id, the context bucket and the last items (recency-weighted);
the item tower the item's own features (id, tags, words). Positives are learned in micro-batches
(the batch's new positives and a sample of earlier ones, the rest of the batch their negatives)
when candidates are next asked for; the item tower's outputs of the items just learned, and a
round-robin slice of the catalogue, are then written to the strategy's own table of item
vectors, searched exactly by FAISS (``faiss.knn``: no index object to keep, so the table is
the state a snapshot holds).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Sequence

import faiss
import numpy as np

from index.base import search_excluding
from streamer.features import ITEM_PREFIX, USER_PREFIX, Features, sequence_feature, user_feature
from streamer.model.two_tower import Bag, TwoTower
from streamer.rowpool import grown, moved_rows
from streamer.strategies.base import Observation, Query, Scored

#: Item index id -> its features (the catalogue's).
ItemFeatures = Callable[[int], Features]


class Neural:
    """The two-tower model's inner-product top-K for users it has seen.

    Examples
    --------
    >>> features = {i: {f"item={i}": 1.0, f"tag={i % 2}": 0.7} for i in range(6)}
    >>> neural = Neural(features.__getitem__, batch=8, seed=0)
    >>> for n in range(300):  # users of taste 0 choose even items, of taste 1 odd ones
    ...     user = n % 10
    ...     neural.learn(Observation(f"u{user}", 2 * (n % 3) + user % 2, "", []))
    >>> sorted(c for c, _ in neural.candidates([Query("u4", "", [])], 3)[0])
    [0, 2, 4]
    """

    name = "neural"
    repeats = False

    def __init__(
        self,
        item_features: ItemFeatures,
        dim: int = 32,
        hidden: int = 64,
        lr: float = 0.05,
        batch: int = 64,
        memory: int = 4096,
        last: int = 3,
        refresh: int = 64,
        seed: int = 0,
        correct: bool = True,
    ) -> None:
        self.item_features = item_features
        self.model = TwoTower(dim, hidden, lr, seed)
        self.vectors = np.zeros((0, dim), np.float32)  # the item tower's output per item
        self.present = np.zeros(0, bool)  # items with a vector (not expired)
        self.gone: set[int] = set()  # expired items: no vector until learned again
        self.batch, self.last, self.refresh = batch, last, refresh
        self._pending: list[tuple[Bag, int]] = []  # new positives: user bag, item
        self._memory: deque[tuple[Bag, int]] = deque(maxlen=memory)  # earlier ones
        self._users: set[str] = set()
        self._items = 0  # one past the largest item learned (the round robin's range)
        self.counts = np.zeros(0)  # positives per item: each item's chance to be in a batch
        self.correct = correct
        self._cursor = 0
        self._rng = np.random.default_rng(seed)

    def _user_bag(self, user: str, bucket: str, recent: Sequence[int]) -> Bag:
        bag = {user_feature(user): 1.0}
        if bucket:
            bag[f"bucket={bucket}"] = 1.0
        for age, item in enumerate(reversed(recent[-self.last :])):  # by name, not by id
            name = next(iter(self.item_features(item)))[len(ITEM_PREFIX) :]
            bag[sequence_feature(name)] = 0.5**age
        return bag

    def learn(self, observation: Observation) -> None:
        bag = self._user_bag(observation.user, observation.bucket, observation.recent)
        self._pending.append((bag, observation.item))
        self._users.add(observation.user)
        self._items = max(self._items, observation.item + 1)
        self.gone.discard(observation.item)

    def _train(self) -> None:
        """One step per ``batch`` new positives, each batch topped up from memory."""
        pending, self._pending = self._pending, []
        touched: set[int] = set()
        for at in range(0, len(pending), self.batch):
            fresh = pending[at : at + self.batch]
            extra = max(self.batch - len(fresh), 0)
            if extra and self._memory:
                picks = self._rng.integers(len(self._memory), size=min(extra, len(self._memory)))
                fresh = fresh + [self._replayed(self._memory[int(p)]) for p in picks]
            users = [u for u, _ in fresh]
            ids = np.array([i for _, i in fresh], np.int64)
            items = [self.item_features(int(i)) for i in ids]
            self.model.step(users, items, self._log_q(ids) if self.correct else None)
            touched.update(i for _, i in fresh)
            self._memory.extend(pending[at : at + self.batch])
        self._upsert(touched)

    def _log_q(self, ids: np.ndarray) -> np.ndarray:
        """Each batch item's log share of the positives so far (its batches' sampling
        probability, up to a constant), counting this batch's."""
        if ids.max() >= len(self.counts):
            self.counts = grown(self.counts, max(2 * len(self.counts), int(ids.max()) + 1), 0)
        np.add.at(self.counts, ids, 1.0)
        return np.log(self.counts[ids] / self.counts.sum())

    def _upsert(self, touched: set[int]) -> None:
        if self._items:
            start = self._cursor % self._items
            stop = min(start + self.refresh, self._items)
            touched.update(range(start, stop))
            self._cursor = stop
        touched -= self.gone  # (a batch topped up from memory holds expired items too)
        if not touched:
            return
        ids = np.array(sorted(touched), np.int64)
        if ids[-1] >= len(self.present):
            size = max(2 * len(self.present), int(ids[-1]) + 1, 64)
            self.vectors, self.present = grown(self.vectors, size, 0), grown(self.present, size, 0)
        self.vectors[ids] = self.model.items.forward([self.item_features(int(i)) for i in ids])
        self.present[ids] = True

    def renumber(self, mapping: np.ndarray) -> None:
        """Item ids renumbered by ``mapping`` (old -> new, -1: dropped with its positives)."""
        m = mapping.tolist()
        self._pending = [(bag, m[i]) for bag, i in self._pending if m[i] >= 0]
        self._memory = deque(
            ((bag, m[i]) for bag, i in self._memory if m[i] >= 0), self._memory.maxlen
        )
        for name in ("vectors", "present", "counts"):
            setattr(self, name, moved_rows(mapping, getattr(self, name)))
        self._items = int(mapping[: self._items].max(initial=-1)) + 1
        self.gone = {m[i] for i in self.gone if m[i] >= 0}

    def forget_user(self, user: str) -> None:
        """An expired user: not known until they choose again, their id's row in the user
        tower freed for new users."""
        self._users.discard(user)
        self.model.forget_users([user_feature(user)])

    def _replayed(self, positive: tuple[Bag, int]) -> tuple[Bag, int]:
        """A remembered positive, without its user's id if the user expired since (a replay
        must not make their freed row again)."""
        bag, item = positive
        key = next(iter(bag))  # the user's id: the first feature of a user bag
        if key[len(USER_PREFIX) :] in self._users:
            return positive
        return {name: weight for name, weight in bag.items() if name != key}, item

    def forget_item(self, item: int) -> None:
        """An expired item: proposed no more until learned again."""
        self.gone.add(item)
        if item < len(self.present):
            self.present[item] = False

    def candidates(self, queries: Sequence[Query], k: int) -> list[Scored]:
        if self._pending:
            self._train()
        out: list[Scored] = [[] for _ in queries]
        known = [n for n, q in enumerate(queries) if q.user in self._users]
        ids = np.flatnonzero(self.present)
        if not known or not len(ids):
            return out
        bags = [
            self._user_bag(queries[n].user, queries[n].bucket, queries[n].recent) for n in known
        ]
        vectors = self.model.users.forward(bags).astype(np.float32)
        table = np.ascontiguousarray(self.vectors[ids])

        def search(q: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
            scores, rows = faiss.knn(q, table, n, metric=faiss.METRIC_INNER_PRODUCT)
            return scores, np.where(rows >= 0, ids[rows], -1)

        exclude = [queries[n].exclude for n in known]
        result = search_excluding(search, vectors, min(k, len(ids)), exclude, len(ids))
        for row, n in enumerate(known):
            out[n] = result.row(row)
        return out
