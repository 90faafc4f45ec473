"""Lists per (user, context): every strategy's candidates, fused by the policy."""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from streamer.catalogue import Catalogue
from streamer.diversity import Calibrator, Diversifier, TagCap, tag_distribution
from streamer.policy import Blend, Rerank, activity
from streamer.popularity import Popularity, context_key
from streamer.settings import Settings
from streamer.strategies import FreshItems, ItemKNN, Personal, Query, Scored, Strategy
from streamer.users import UserState

#: How the user's own items are treated: never listed, listed by any strategy, or listed by
#: the re-consumption strategy when the policy finds that it pays (``seen_items`` setting).
SEEN_ITEMS = ("exclude", "allow", "policy")
#: How high the model must rank a fresh item for the user for it to get a slot.
COLD_START_RANK = 5
#: The user's last items whose tags a calibrated list follows.
CALIBRATION_HISTORY = 50


def _entries(items: Sequence[tuple[str, float]]) -> list[dict[str, Any]]:
    """A scored list as published: ``[{"item", "score"}, ...]``."""
    return [{"item": item, "score": round(score, 6)} for item, score in items]


@dataclass(frozen=True)
class Request:
    """Recommend for ``user`` in ``context``; ``event_ts`` is the event that asked."""

    user: str
    context: dict[str, str]
    event_ts: float


@dataclass(frozen=True)
class RecList:
    """A user's list, as published to ``{prefix}rec:{user}``; ``strategies[n]`` placed
    ``items[n]``; a click that carries ``rec_id`` is credited to this list."""

    user: str
    items: list[tuple[str, float]]
    context: dict[str, str]
    model_version: int
    event_ts: float
    source: str  # "model" (a user the model knows) or "popular"
    strategies: list[str] = field(default_factory=list)
    rec_id: str = ""
    arm: str = ""  # the A/B arm that served it (``streamer.arms``), if there are arms

    def to_json(self, published_ts: float) -> dict[str, Any]:
        strategies = self.strategies or [self.source] * len(self.items)
        return ({"arm": self.arm} if self.arm else {}) | {
            "user": self.user,
            "rec_id": self.rec_id,
            "items": [
                entry | {"strategy": strategy}
                for entry, strategy in zip(_entries(self.items), strategies, strict=True)
            ],
            "context": self.context,
            "model_version": self.model_version,
            "source": self.source,
            "event_ts": self.event_ts,
            "published_ts": published_ts,
        }


@dataclass(frozen=True)
class PopList:
    """A popular list, published to ``{prefix}pop`` (key '') or ``{prefix}pop:{key}``."""

    key: str
    items: list[tuple[str, float]] = field(default_factory=list)

    def to_json(self, published_ts: float) -> dict[str, Any]:
        return {
            "context_key": self.key,
            "items": _entries(self.items),
            "published_ts": published_ts,
        }


@dataclass(frozen=True)
class SimList:
    """An item's similar items, as published to ``{prefix}sim:{item}``."""

    item: str
    items: list[tuple[str, float]] = field(default_factory=list)

    def to_json(self, published_ts: float) -> dict[str, Any]:
        return {
            "item": self.item,
            "items": _entries(self.items),
            "published_ts": published_ts,
        }


class Recommender:
    """Asks every strategy for candidates and lets the policy fuse them into one list."""

    def __init__(
        self,
        settings: Settings,
        strategies: Sequence[Strategy],
        catalogue: Catalogue,
        users: UserState,
        popularity: Popularity[int],
        version: Any,
        vectors_of: Callable[[np.ndarray], np.ndarray] | None = None,
    ) -> None:
        if settings.seen_items not in SEEN_ITEMS:
            raise ValueError(f"seen_items={settings.seen_items!r}: expected one of {SEEN_ITEMS}")
        self.settings = settings
        self.strategies = [
            s for s in strategies if not (s.repeats and settings.seen_items == "exclude")
        ]
        self.catalogue, self.users, self.popularity = catalogue, users, popularity
        self.version = version  # () -> the model version stamped on lists
        self.k = settings.top_k
        self.depth = max(settings.candidates, settings.top_k)  # each strategy's proposals
        # the two sources of cold start, found once (not per list)
        self._fresh = next((s for s in self.strategies if isinstance(s, FreshItems)), None)
        self._personal = next(
            (n for n, s in enumerate(self.strategies) if isinstance(s, Personal)), None
        )
        #: diversity re-ranking (``STREAMREC_DIVERSITY``), over item vectors from ``vectors_of``
        self.rerank: Rerank | None = None
        if settings.max_per_tag > 0:  # the cheaper one, instead of MMR
            self.rerank = TagCap(settings.max_per_tag, self._tags_of)
        elif settings.diversity > 0 and vectors_of is not None:
            self.rerank = Diversifier(settings.diversity, vectors_of, self._popularity_of)
        self.policy = Blend(
            [s.name for s in self.strategies],
            depth=self.depth,
            exploration=settings.exploration,
            max_users=settings.policy_users,
            seed=settings.seed,
        )

    def _reranker(self, user: str) -> Rerank | None:
        """A calibrating re-ranker for ``user``'s history, or the per-tag cap, or MMR's, or
        None."""
        if not self.settings.calibration:
            return self.rerank
        target = self.tag_target(user)
        if not target:
            return None
        return Calibrator(self.settings.calibration, target, self._tags_of)

    def tag_target(self, user: str) -> dict[str, float]:
        """The tag shares of ``user``'s last ``CALIBRATION_HISTORY`` items: what a calibrated
        list follows."""
        recent = self.users.recent(user, CALIBRATION_HISTORY)
        return tag_distribution([self._tags_of(i) for i in recent])

    def _tags_of(self, item: int) -> Sequence[str]:
        return self.catalogue.tags.get(item, ())

    def _popularity_of(self, items: np.ndarray) -> np.ndarray:
        """The items' (decayed) counts of positives, overall."""
        counts = self.popularity.counts()
        return np.array([counts.get(int(i), 0.0) for i in items])

    def bucket(self, user: str, context: dict[str, str]) -> str:
        """The policy's context bucket: the chosen context keys and the user's activity."""
        keys = context_key(context, self.settings.policy_context_keys)
        return f"{keys}|a={activity(len(self.users.history(user)))}"

    def proposals(self, requests: Sequence[Request]) -> list[list[Scored]]:
        """Every strategy's candidates per request (``[strategy][request]``), best first."""
        window = max(self.settings.knn_window, self.settings.knn_last, self.depth)
        pop_keys = self.settings.pop_context_keys
        seen = self.settings.seen_items
        queries = [
            Query(
                r.user,
                context_key(r.context, pop_keys),
                self.users.recent(r.user, window),
                frozenset() if seen == "allow" else self.users.history(r.user),
                r.context,
            )
            for r in requests
        ]
        repeat_queries = [
            Query(q.user, q.bucket, q.recent, frozenset(), q.context) for q in queries
        ]
        proposed = [
            s.candidates(repeat_queries if s.repeats else queries, self.depth)
            for s in self.strategies
        ]
        retired = self.catalogue.retired
        if retired:  # expired items (STREAMREC_ITEM_TTL_S) are in no list until seen again
            proposed = [
                [[c for c in scored if c[0] not in retired] for scored in per] for per in proposed
            ]
        return proposed

    def recommend(self, requests: Sequence[Request], known: Collection[str] = ()) -> list[RecList]:
        """One fused list per request; ``known`` users are marked ``model``, others ``popular``."""
        if not requests:
            return []
        proposals = self.proposals(requests)
        out = []
        for n, request in enumerate(requests):
            fused = self.policy.fuse(
                request.user,
                self.bucket(request.user, request.context),
                [lists[n] for lists in proposals],
                self.k,
                activity(len(self.users.history(request.user))),
                self._reranker(request.user),
            )
            items, strategies = self._cold_start(fused.items, fused.strategies, proposals, n)
            out.append(
                RecList(
                    request.user,
                    self._named(items),
                    request.context,
                    self.version(),
                    request.event_ts,
                    "model" if request.user in known else "popular",
                    strategies,
                    fused.rec_id,
                )
            )
        return out

    def _cold_start(
        self,
        items: list[tuple[int, float]],
        strategies: list[str],
        proposals: list[list[Scored]],
        n: int,
    ) -> tuple[list[tuple[int, float]], list[str]]:
        """A fresh item (new, chosen by fewer than 3 users) that the model ranks among the
        user's first ``COLD_START_RANK`` gets the list's last slot if the policy left it out:
        content-based cold start, bounded by the item's freshness. The policy alone would not
        show it: it has no evidence for an item nobody chose."""
        fresh, personal = self._fresh, self._personal
        if fresh is None or personal is None or not items:
            return items, strategies
        listed = {item for item, _ in items}
        for item, _ in proposals[personal][n][:COLD_START_RANK]:
            if item not in listed and fresh.is_fresh(item):
                return [*items[:-1], (item, items[-1][1])], [*strategies[:-1], "personal"]
        return items, strategies

    def similar_lists(self, items: Collection[int]) -> list[SimList]:
        """The similar items of ``items`` (by the first item-kNN strategy), for ``sim:`` keys."""
        knn = next((s for s in self.strategies if isinstance(s, ItemKNN)), None)
        if knn is None:
            return []
        named = self.catalogue.item_of
        ordered = list(items)
        return [
            SimList(named(i), self._named(scored))
            for i, scored in zip(ordered, knn.similar_many(ordered, self.k), strict=True)
        ]

    def popular_lists(self) -> list[PopList]:
        """The popular list of every context bucket seen so far (no expired item: a count
        decays by interactions, not by time, and outlives the item's last click)."""
        retired = self.catalogue.retired
        return [
            PopList(key, self._named(self.popularity.top(key, self.k, gone=retired)))
            for key in self.popularity.keys()  # noqa: SIM118 (not a dict)
        ]

    def _named(self, scored: Sequence[tuple[int, float]]) -> list[tuple[str, float]]:
        return [(self.catalogue.item_of(int(i)), float(s)) for i, s in scored]
