"""What the worker does with a batch of valid events, with no Kafka in sight.

learn (per event) -> refresh item vectors in the index -> recommend for touched users.
The Faust agent, ``streamrec evaluate`` and the tests all drive this same object.
"""

from __future__ import annotations

from collections.abc import Container, Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np

from index.base import ItemIndex
from index.exact import ExactIndex
from index.factory import make_index
from index.hnsw import HNSWIndex
from streamer.catalogue import Catalogue
from streamer.events import Click, ContextEvent, ItemEvent
from streamer.features import user_features
from streamer.model import NegativeSampler, RecModel
from streamer.popularity import Popularity, context_key
from streamer.recommender import PopList, RecList, Recommender, Request
from streamer.settings import Settings
from streamer.users import UserState

Event = Click | ContextEvent | ItemEvent


@dataclass
class BatchOutput:
    """What a batch produced for the publisher."""

    lists: list[RecList] = field(default_factory=list)
    popular: list[PopList] = field(default_factory=list)


class Engine:
    """The recommender's state and its per-batch step.

    Examples
    --------
    >>> engine = Engine(Settings(n_factors=4, top_k=2))
    >>> out = engine.process([
    ...     ItemEvent(item="a", ts=0.0, tags=["x"]), ItemEvent(item="b", ts=0.0, tags=["x"]),
    ...     ItemEvent(item="c", ts=0.0, tags=["y"]),
    ...     Click(user="u", item="a", type="click", ts=1.0, context={"device": "tv"}),
    ... ])
    >>> [(r.user, r.source, len(r.items)) for r in out.lists]
    [('u', 'model', 2)]
    >>> "a" in [item for item, _ in out.lists[0].items]  # already seen: excluded
    False
    """

    def __init__(self, settings: Settings, index: ItemIndex | None = None) -> None:
        self.settings = settings
        self.model = RecModel(settings)
        self.catalogue = Catalogue()
        self.users = UserState(settings.history_size)
        self.popularity = Popularity()
        self.sampler = NegativeSampler(seed=settings.seed)
        self.index = index or make_index(
            settings.index_backend, self.model.dim, hnsw_min_items=settings.hnsw_min_items
        )
        self.recommender = Recommender(
            self.model,
            self.index,
            self.catalogue,
            self.users,
            self.popularity,
            settings.top_k,
            settings.pop_context_keys,
        )
        self._refresh_cursor = 0
        self.events = 0

    def process(self, events: Sequence[Event], with_popular: bool = False) -> BatchOutput:
        """Learn from ``events`` in order; return the lists to publish."""
        touched_items: set[int] = set()
        requests: dict[str, Request] = {}
        for event in events:
            if isinstance(event, Click):
                touched_items.update(self.learn(event))
                requests[event.user] = Request(event.user, event.context, event.ts)
            elif isinstance(event, ContextEvent):
                self.users.set_context(event.user, event.context)
                requests[event.user] = Request(event.user, event.context, event.ts)
            else:
                touched_items.add(self.catalogue.add_metadata(event))
            self.events += 1
        self.refresh_items(touched_items)
        out = BatchOutput(self.recommender.recommend(list(requests.values())))
        if with_popular:
            out.popular = self.recommender.popular_lists()
        return out

    def learn(self, click: Click) -> list[int]:
        """Learn one interaction; returns the index ids whose vectors it moved."""
        item = self.catalogue.id_of(click.item)
        history = self.users.history(click.user)
        negatives = [] if click.type == "skip" else self._negatives(history, item)
        self.model.learn_one(
            user_features(click.user, click.context),
            self.catalogue.features(item),
            click.type,
            click.value,
            [self.catalogue.features(n) for n in negatives],
        )
        self.users.add(click.user, item)
        self.users.set_context(click.user, click.context)
        if click.type != "skip":
            self.sampler.add(item)
            key = context_key(click.context, self.settings.pop_context_keys)
            self.popularity.add(item, key)
        return [item, *negatives]

    def refresh_items(self, touched: Iterable[int]) -> None:
        """Re-upsert touched items, plus the next round-robin chunk of the catalogue."""
        ids = set(touched)
        n = len(self.catalogue)
        chunk = self.settings.index_refresh_chunk
        if n and chunk:
            # Shared features (tags, words, context) move too: recompute a round-robin slice of
            # the catalogue per batch, so every item vector is fresh within n / chunk batches.
            start = self._refresh_cursor % n
            ids.update(range(start, min(start + chunk, n)))
            self._refresh_cursor = start + chunk
        if not ids:
            return
        order = np.fromiter(sorted(ids), np.int64, len(ids))
        vectors = self.model.item_vectors([self.catalogue.features(int(i)) for i in order])
        self.index.upsert(order, vectors)
        self._maybe_switch_to_hnsw()

    def _maybe_switch_to_hnsw(self) -> None:
        """``auto``: past ``hnsw_min_items`` items, move to HNSW (built in the background)."""
        s = self.settings
        if s.index_backend != "auto" or not isinstance(self.index, ExactIndex):
            return
        if len(self.index) < s.hnsw_min_items:
            return
        hnsw = HNSWIndex(self.model.dim)
        hnsw.upsert(*self.index.all_items())  # findable at once; the graph builds meanwhile
        self.index = self.recommender.index = hnsw

    def _negatives(self, history: Container[int], item: int) -> list[int]:
        exclude = _Union(history, item)
        return self.sampler.sample(self.settings.negatives, exclude=exclude)


class _Union:
    """``history | {item}`` without copying the history."""

    def __init__(self, history: Container[int], item: int) -> None:
        self.history, self.item = history, item

    def __contains__(self, other: object) -> bool:
        return other == self.item or other in self.history
