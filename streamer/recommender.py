"""Top-K per (user, context): one batched FAISS search, history excluded, popular fallback."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from index.base import ItemIndex
from streamer.catalogue import Catalogue
from streamer.features import user_features
from streamer.model import RecModel
from streamer.popularity import Popularity, context_key
from streamer.users import UserState


@dataclass(frozen=True)
class Request:
    """Recommend for ``user`` in ``context``; ``event_ts`` is the event that asked."""

    user: str
    context: dict[str, str]
    event_ts: float


@dataclass(frozen=True)
class RecList:
    """A user's list, as published to ``{prefix}rec:{user}``."""

    user: str
    items: list[tuple[str, float]]
    context: dict[str, str]
    model_version: int
    event_ts: float
    source: str  # "model" or "popular"

    def to_json(self, published_ts: float) -> dict[str, Any]:
        return {
            "user": self.user,
            "items": [{"item": item, "score": round(score, 6)} for item, score in self.items],
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
            "items": [{"item": item, "score": round(score, 6)} for item, score in self.items],
            "published_ts": published_ts,
        }


class Recommender:
    """Candidates from the item index, filtered by the user's history."""

    def __init__(
        self,
        model: RecModel,
        index: ItemIndex,
        catalogue: Catalogue,
        users: UserState,
        popularity: Popularity[int],
        k: int,
        pop_context_keys: Sequence[str],
    ) -> None:
        self.model, self.index, self.catalogue = model, index, catalogue
        self.users, self.popularity = users, popularity
        self.k, self.pop_context_keys = k, tuple(pop_context_keys)

    def recommend(self, requests: Sequence[Request]) -> list[RecList]:
        """One list per request: the model's for known users, popular-in-context otherwise."""
        known = [r for r in requests if self.model.knows(f"user={r.user}")]
        out = [self._popular(r) for r in requests if not self.model.knows(f"user={r.user}")]
        if not known or not len(self.index):
            return out + [self._popular(r) for r in known]
        queries = self.model.query_vectors([user_features(r.user, r.context) for r in known])
        exclude = [self.users.history(r.user) for r in known]
        result = self.index.search(queries, self.k, exclude=exclude)
        for row, request in enumerate(known):
            valid = result.ids[row] >= 0
            items = self._named(
                list(zip(result.ids[row][valid], result.scores[row][valid], strict=True))
            )
            out.append(self._list(request, items, "model"))
        return out

    def popular_lists(self) -> list[PopList]:
        """The popular list of every context bucket seen so far."""
        return [
            PopList(key, self._named(self.popularity.top(key, self.k)))
            for key in self.popularity.keys()  # noqa: SIM118 (not a dict)
        ]

    def _popular(self, request: Request) -> RecList:
        key = context_key(request.context, self.pop_context_keys)
        history = self.users.history(request.user)
        items = self._named(self.popularity.top(key, self.k, exclude=history))
        return self._list(request, items, "popular")

    def _named(self, scored: Sequence[tuple[int, float]]) -> list[tuple[str, float]]:
        return [(self.catalogue.item_of(int(i)), float(s)) for i, s in scored]

    def _list(self, request: Request, items: list[tuple[str, float]], source: str) -> RecList:
        return RecList(
            request.user, items, request.context, self.model.version, request.event_ts, source
        )
