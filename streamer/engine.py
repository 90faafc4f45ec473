"""What the worker does with a batch of valid events, with no Kafka in sight.

learn (per event) -> refresh item vectors in the index -> recommend for touched users.
The Faust agent, ``streamrec evaluate`` and the tests all drive this same object.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Collection, Container, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from index.base import ItemIndex
from index.factory import set_threads
from streamer.beside import BESIDE_MIN, Beside
from streamer.catalogue import Catalogue
from streamer.events import Click, ContextEvent, Event, ItemEvent
from streamer.expiry import LastSeen
from streamer.features import Features, user_feature, user_features
from streamer.index_upkeep import IndexUpkeep
from streamer.model import NegativeSampler, RecModel
from streamer.model.recmodel import Interaction
from streamer.popularity import Popularity, context_key
from streamer.recommender import PopList, RecList, Recommender, Request, SimList
from streamer.settings import Settings
from streamer.strategies import (
    CoCounts,
    FreshItems,
    ItemKNN,
    Observation,
    Personal,
    Renumbered,
    Strategy,
)
from streamer.strategies.factory import make_strategies
from streamer.strategies.neural import Neural
from streamer.users import UserState

#: The most similar-item lists a batch computes: a due set larger than this is spread over the
#: next batches, so that it does not hold one batch (and its users' freshness) up.
SIMILAR_PER_BATCH = 200
#: ... and at most one per this many events of the batch, but at least ``SIMILAR_FLOOR``: a paced
#: stream's small batches share the due set (~1 ms of lists each) instead of a few of them
#: computing 200 lists each (~10 ms more apiece, in a row: the p99 freshness at 1,000 events/s,
#: docs/benchmarks.md), and still drain 20 lists a batch, ~1,000 a second at 50 batches a second.
EVENTS_PER_SIMILAR = 5
SIMILAR_FLOOR = 20
#: The catalogue is compacted (``Engine.compact``) once it holds at least this many expired
#: items and as many as it keeps: memory for at most twice the live items, not every item ever.
COMPACT_MIN = 1024


class EngineObserver(Protocol):
    """What an evaluation watches as the engine goes (``Engine.observers``): each positive
    with the list its user had just before, and each rating with its prediction, made just
    before it was learned (e.g. ``streamer.evaluation.prequential.Prequential``; the engine
    itself keeps no metrics)."""

    def positive(self, user: str, item: int, shown: tuple[int, ...]) -> None: ...

    def rating(self, user: str, predicted: float, actual: float) -> None: ...

    def renumber(self, mapping: np.ndarray) -> None:
        """The catalogue's item ids were renumbered: old id -> new id, -1 dropped."""


@dataclass
class BatchOutput:
    """What a batch produced for the publisher."""

    lists: list[RecList] = field(default_factory=list)
    popular: list[PopList] = field(default_factory=list)
    similar: list[SimList] = field(default_factory=list)
    failed: list[tuple[int, Exception]] = field(default_factory=list)  # (position, error)


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
    >>> rec = out.lists[0]
    >>> [(item, strategy) for (item, _), strategy in zip(rec.items, rec.strategies)]
    [('c', 'personal'), ('a', 'recent')]
    """

    def __init__(self, settings: Settings, index: ItemIndex | None = None) -> None:
        self.settings = settings
        self.model = RecModel(settings)
        self.catalogue = Catalogue()
        self.users = UserState(settings.history_size)
        self.popularity: Popularity[int] = Popularity()
        self.sampler = NegativeSampler(seed=settings.seed, uniform=settings.uniform_negatives)
        set_threads(settings.faiss_threads)
        self.upkeep = IndexUpkeep(settings, self.model, self.catalogue, self.popularity, index)
        self.strategies = make_strategies(
            settings,
            self.model,
            self.upkeep.index,
            self.popularity,
            self.query_features,
            self.catalogue.features,
        )
        self.recommender = Recommender(
            settings,
            self.strategies,
            self.catalogue,
            self.users,
            self.popularity,
            self._model_version,
            self._item_vectors,
        )
        # the user's last items an event reads: item-kNN's windows, the sequence features
        self._window = max(settings.knn_window, settings.knn_last, settings.sequence_items)
        # strategies the engine feeds beyond learn(): new items, and the index when it moves
        self._fresh = [s for s in self.strategies if isinstance(s, FreshItems)]
        self._neural = [s for s in self.strategies if isinstance(s, Neural)]
        self.upkeep.personal = [s for s in self.strategies if isinstance(s, Personal)]
        self.events = 0
        self.interactions = 0  # non-skip clicks learned, this worker's and others' (sync)
        self._chosen: dict[int, None] = {}  # items chosen since their last similar list
        self._similar_due: list[int] = []  # items whose similar list is due, oldest first
        # What each user was shown, for the observers to score against what they choose next
        # (prequential evaluation, per-arm and per-group figures: ``streamer.evaluation``).
        self.observers: list[EngineObserver] = []
        self.shown: dict[str, tuple[int, ...]] = {}
        self.item_counts: Counter[int] = Counter()  # positives per item (the audit's novelty)
        # users by when they were last seen (stream time): see _expire
        self._last_seen: LastSeen[str] = LastSeen(settings.user_ttl_s)
        self.expired_users = 0
        # items by when they were last clicked or updated (stream time)
        self._item_seen: LastSeen[int] = LastSeen(settings.item_ttl_s)
        self.expired_items = 0
        self.compactions = 0
        self._counts = list({id(c): c for c in _co_counts(self.strategies)}.values())
        self._pending: list[Interaction] = []  # the batch's interactions not learned yet
        self.taps: list[Callable[[Observation], None]] = []  # see each positive (streamer.sync)

    def _item_vectors(self, items: np.ndarray) -> np.ndarray:
        """The item vectors (``e_i``, no bias) of item ids ``items`` that the index ranks by
        (as fresh as its upkeep keeps them; read, not computed again)."""
        return self.upkeep.index.vectors(np.asarray(items, np.int64))[:, 1:]

    def process(
        self, events: Sequence[Event], with_popular: bool = False, with_similar: bool = False
    ) -> BatchOutput:
        """Learn from ``events`` in order (one compiled call per model for the batch); return
        the lists to publish: the users', and the popular lists and the similar items of the
        items chosen since the last time when asked.

        Prequential: every rating is predicted just before its own event is learned, and every
        positive is scored against the list its user had before the batch."""
        touched_items: set[int] = set()
        asked: dict[str, Click | ContextEvent] = {}  # each user's last event (a list each)
        self._pending = []
        failed: list[tuple[int, Exception]] = []
        catalogue, retired, user_ttl = (
            self.catalogue,
            self.catalogue.retired,
            self.settings.user_ttl_s,
        )
        for position, event in enumerate(events):
            # before an event, whatever the batches: deterministic
            if len(retired) >= COMPACT_MIN and self._compaction_due():
                mapping = self.compact()
                touched_items = {int(mapping[i]) for i in touched_items if mapping[i] >= 0}
                retired = catalogue.retired
            try:
                if user_ttl and not isinstance(event, ItemEvent):
                    self._seen(event.user, event.ts)
                size = len(catalogue)
                if isinstance(event, Click):
                    touched_items.add(self._take(event))
                elif isinstance(event, ContextEvent):
                    self.users.set_context(event.user, event.context)
                else:
                    item = catalogue.add_metadata(event)
                    touched_items.add(item)
                    self._seen_item(item, event.ts)
                    if item < size:  # new metadata of a known item (new items: _new_items)
                        self.model.add_item(catalogue.features(item))
                if len(catalogue) > size:
                    self._new_items(range(size, len(catalogue)))
            except Exception as exc:  # a bug must not cost the batch: the caller dead-letters
                failed.append((position, exc))
                continue
            if not isinstance(event, ItemEvent):
                asked[event.user] = event
            self.events += 1
            catalogue.clock = self.events
        self._learn_pending()
        if self.settings.user_ttl_s:  # a user expired since their event (a lagging partition's,
            # already past its time) gets no list: one would keep their state past expiry
            asked = {u: e for u, e in asked.items() if u in self._last_seen}
        requests = [Request(u, e.context, e.ts) for u, e in asked.items()]
        self.upkeep.refresh(touched_items, len(events), self.events)
        known = {u for u in asked if self.model.knows(user_feature(u))}
        out = BatchOutput(self.recommender.recommend(requests, known), failed=failed)
        self._remember(out.lists)
        if with_popular:
            out.popular = self.recommender.popular_lists()
        share = min(SIMILAR_PER_BATCH, max(SIMILAR_FLOOR, len(events) // EVENTS_PER_SIMILAR))
        out.similar = self.similar_lists(with_similar, share)
        return out

    def similar_lists(self, due: bool, at_most: int = SIMILAR_PER_BATCH) -> list[SimList]:
        """Similar-item lists to publish now: when ``due``, every item chosen since the last
        time joins the items whose list is due; ``at_most`` of those are computed (the oldest
        first), the rest wait for the next call."""
        if due:
            waiting = set(self._similar_due)
            self._similar_due += [i for i in self._chosen if i not in waiting]
            self._chosen = {}
        if not self._similar_due:
            return []
        now, self._similar_due = self._similar_due[:at_most], self._similar_due[at_most:]
        return self.recommender.similar_lists(now)

    def _learn_pending(self) -> None:
        """Learn the batch's interactions booked so far (one compiled call per model); each
        rating is predicted, then learned."""
        batch, self._pending = self._pending, []
        # item-kNN's counts learn the batch's positives on another core meanwhile (their
        # own arrays, in the same order: the same counts, sooner)
        with Beside(self._learn_counts, worth=len(batch) >= BESIDE_MIN):
            predicted = self.model.learn_batch(batch)
        for y_pred, interaction in zip(predicted, batch, strict=True):
            if y_pred is not None and interaction.value is not None:
                for observer in self.observers:
                    observer.rating(interaction.user, y_pred, interaction.value)

    def _learn_counts(self) -> None:
        for counts in self._counts:
            counts.flush()

    def _take(self, click: Click) -> int:
        """Book one interaction and queue it for learning; returns the index id to refresh."""
        # (the click's fields read once: a Faust record's are descriptors)
        user, context, kind = click.user, click.context, click.type
        catalogue, users = self.catalogue, self.users
        item = catalogue.id_of(click.item)
        if self.settings.item_ttl_s:
            self._seen_item(item, click.ts)
        history = users.history(user)
        recent = users.recent(user, self._window)  # before this one
        user_x = self.query_features(user, context, recent)
        key = context_key(context, self.settings.pop_context_keys)
        if self.is_positive(click):
            shown = self.shown.get(user)
            if shown is None:  # what the read helper serves a user without a list
                shown = self._popular_for(key, history)
            for observer in self.observers:
                observer.positive(user, item, shown)
            self.recommender.policy.credit(user, item, click.rec_id)
        negatives = [] if kind == "skip" else self._negatives(history, item)
        self._pending.append(
            Interaction(
                user_x,
                catalogue.features(item),
                kind,
                click.value,
                catalogue.features_of(negatives),
                user,
            )
        )
        users.set_context(user, context)
        if kind != "skip":  # a skip is learned as a negative, never joins the history
            seen = Observation(user, item, key, recent)
            self._learn_positive(seen, self.strategies)
            users.add(user, item)
            for tap in self.taps:
                tap(seen)
        # The negatives' vectors moved too, a little: the round-robin refresh rewrites them
        # (every n / index_refresh_per_event events) instead of every event that samples them,
        # which was 8 of every 9 index writes (MovieLens HitRate@10 0.1568 -> 0.1566).
        return item

    def _learn_positive(self, seen: Observation, strategies: Iterable[Strategy]) -> None:
        """What a positive teaches beyond the model and its user: ``strategies``, the negative
        sampler, popularity in its context, the audit's counts."""
        for strategy in strategies:
            strategy.learn(seen)
        self.interactions += 1
        self._chosen[seen.item] = None
        self.sampler.add(seen.item)
        self.popularity.add(seen.item, seen.bucket)
        self.item_counts[seen.item] += 1

    def learn_shared(self, positives: Iterable[tuple[str, str, Sequence[str]]]) -> list[int]:
        """Positives another worker learned, as ``(item, context bucket, the user's recent
        items)`` by name: learned by everything but the user's own state (their history, the
        neural strategy's user) and the model (whose changes come as parameters, see
        ``streamer.sync``). An item chosen elsewhere is seen here too (item expiry), at this
        worker's stream time: an item clicked only on other workers' partitions stays alive.
        Returns the items' ids."""
        strategies = [s for s in self.strategies if not isinstance(s, Neural)]
        size = len(self.catalogue)
        now = self._item_seen.clock
        ids = []
        for name, bucket, recent in positives:
            item = self.catalogue.id_of(name)
            if now > -math.inf:  # (before this worker's first event nothing can expire)
                self._seen_item(item, now)
            before = [self.catalogue.id_of(other) for other in recent]
            self._learn_positive(Observation("", item, bucket, before), strategies)
            ids.append(item)
            self.events += 1  # the clock of item ages and the index's round robin
            self.catalogue.clock = self.events
        self._new_items(range(size, len(self.catalogue)))
        return ids

    def _model_version(self) -> int:
        return self.model.version

    def is_positive(self, click: Click) -> bool:
        """:meth:`Click.is_positive` with this engine's ``positive_rating``."""
        return click.is_positive(self.settings.positive_rating)

    def _popular_for(self, key: str, history: Collection[int]) -> tuple[int, ...]:
        """The popular list of bucket ``key`` without ``history`` nor expired items (its
        leaders, walked past them: ``Popularity.top``)."""
        k, retired = self.settings.eval_k, self.catalogue.retired
        return tuple(i for i, _ in self.popularity.top(key, k, history, retired))

    def _remember(self, lists: Sequence[RecList]) -> None:
        """Each user's list, to score (and audit) at the user's next positive."""
        k = self.settings.eval_k
        for rec in lists:
            self.shown[rec.user] = tuple(self.catalogue.id_of(item) for item, _ in rec.items[:k])

    def _seen(self, user: str, ts: float) -> None:
        """``user`` is active at ``ts``; users not seen for ``user_ttl_s`` of stream time before
        the stream's time (the latest seen: ``streamer.expiry``) expire (per event, in order:
        what expires does not depend on the batches)."""
        if self.settings.user_ttl_s:
            for oldest in self._last_seen.touch(user, ts):
                self._expire(oldest)

    def last_seen(self, user: str) -> float | None:
        """When ``user`` was last active (stream time; kept with ``user_ttl_s`` only)."""
        return self._last_seen.get(user)

    def seen_at(self, user: str, ts: float) -> None:
        """``user`` was last active at ``ts`` (a user handed over from another worker)."""
        self._seen(user, ts)

    def _expire(self, user: str) -> None:
        """Forget everything kept for ``user``: history, context, last list, the policy's last
        candidates, the model's rows of its id (reused by new ids), the neural strategy's."""
        self.users.forget(user)
        self.shown.pop(user, None)
        self.recommender.policy.forget(user)
        self.model.forget([user_feature(user)])
        for neural in self._neural:
            neural.forget_user(user)
        self.expired_users += 1

    def _seen_item(self, item: int, ts: float) -> None:
        """``item`` is clicked or updated at ``ts`` (back from expiry if it had expired);
        items not seen for ``item_ttl_s`` of stream time before it expire, per event."""
        if self.settings.item_ttl_s:
            self.catalogue.retired.discard(item)  # encoded again by the model when next read
            for oldest in self._item_seen.touch(item, ts):
                self._retire(oldest)

    def _retire(self, item: int) -> None:
        """Expire ``item``: out of the index and of every list (the recommender filters
        retired items), its own model rows and item-kNN row freed; its id and metadata kept."""
        self._learn_pending()  # the events before this one first: they may sample it
        self.catalogue.retired.add(item)
        self.upkeep.remove([item])
        self.model.forget_item(self.catalogue.features(item))
        for counts in self._counts:
            counts.forget_item(item)
        for neural in self._neural:
            neural.forget_item(item)
        self.expired_items += 1

    def _compaction_due(self) -> bool:
        retired = len(self.catalogue.retired)
        return retired >= COMPACT_MIN and 2 * retired >= len(self.catalogue)

    def compact(self) -> np.ndarray:
        """Drop the expired items from everything that keeps item ids and renumber the others,
        in their order (``Catalogue.compact``): the catalogue, the model's item slots, the
        histories, popularity, the sampler, the strategies, the policy's last candidates, the
        index, the observers, the lists to score. An expired item that comes back after this is
        a new item. Returns the mapping, old id -> new id (-1: dropped)."""
        self._learn_pending()
        features = self.catalogue.features
        self.model.compact_items({next(iter(features(i))) for i in self.catalogue.retired})
        mapping = self.catalogue.compact()
        holders: list[Renumbered] = [self.users, self.popularity, self.sampler, *self._counts]
        for holder in holders:
            holder.renumber(mapping)
        for strategy in self.strategies:
            if isinstance(strategy, Renumbered):
                strategy.renumber(mapping)
        self.recommender.policy.renumber(mapping)
        self.upkeep.renumber(mapping)
        for observer in self.observers:
            observer.renumber(mapping)
        m = mapping.tolist()
        kept = {old: new for old, new in enumerate(m) if new >= 0}
        self.shown = {u: tuple(kept[i] for i in s if i in kept) for u, s in self.shown.items()}
        counts = {kept[i]: n for i, n in self.item_counts.items() if i in kept}
        self.item_counts.clear()  # in place: observers hold it
        self.item_counts.update(counts)
        self._item_seen.rename(kept)
        self._chosen = {kept[i]: None for i in self._chosen if i in kept}
        self._similar_due = [kept[i] for i in self._similar_due if i in kept]
        self.compactions += 1
        return mapping

    def _new_items(self, ids: range) -> None:
        for item in ids:
            self.model.add_item(self.catalogue.features(item))
            for strategy in self._fresh:
                strategy.add(item)

    def trim(self) -> None:
        """Drop the free ends of the row pools (item-kNN, the rating neighbourhood): what a
        snapshot carries is what is in use (a pool grows again, repacked, when it must)."""
        for counts in self._counts:
            counts.trim()
        self.model.neighbours.trim()

    def report(self) -> dict[str, Any]:
        """The model's guards, expiry, and the policy's estimates per strategy (the
        prequential metrics are an observer's: ``streamer.evaluation.prequential``)."""
        model = self.model
        report: dict[str, Any] = dict(
            resets=model.resets, clamped=model.clamped, nonfinite=model.nonfinite
        )
        report["interactions_learned"] = self.interactions
        report["expired_users"] = self.expired_users
        report["expired_items"] = self.expired_items
        report["compactions"] = self.compactions
        policy = self.recommender.policy
        report["strategies"] = {"hit_rates": policy.hit_rates(), "clicks": policy.clicks}
        report["stale_rec_ids"] = policy.stale
        return report

    @property
    def index(self) -> ItemIndex:
        """The index of item vectors (kept by :attr:`upkeep`)."""
        return self.upkeep.index

    def score(self, user: str, context: dict[str, str], item: int) -> float:
        """The ranking score the index orders by: the model's logit plus the popularity prior."""
        prior = float(self.upkeep.prior(np.array([item]), self.events)[0])
        query = self.query_features(user, context)
        return self.model.score(query, self.catalogue.features(item)) + prior

    def query_features(
        self, user: str, context: dict[str, str], recent: Sequence[int] | None = None
    ) -> Features:
        """The query side of ``user`` now: id, context and last items (before any new one;
        expired items left out: their rows are gone, and would otherwise be made again).
        ``recent``: the user's last items if already read (at least ``sequence_items``)."""
        n = self.settings.sequence_items
        previous = self.users.recent(user, n) if recent is None else recent[-n:] if n else ()
        items = self.catalogue.names_of(previous, leaving_out=self.catalogue.retired)
        return user_features(user, context, items, with_id=self._has_id(user))

    def _has_id(self, user: str) -> bool:
        """Whether ``user`` has had ``user_min_events`` events with this one (one-off ids are
        left out of the model until they recur: no rows for users seen once)."""
        least = self.settings.user_min_events
        return least <= 1 or len(self.users.history(user)) + 1 >= least

    def _negatives(self, history: Container[int], item: int) -> list[int]:
        n, items, retired = self.settings.negatives, len(self.catalogue), self.catalogue.retired
        return self.sampler.sample(n, history, items, chosen=item, gone=retired)


def _co_counts(strategies: Iterable[object]) -> list[CoCounts]:
    """The co-occurrence tables the item-kNN strategies read (shared ones once each)."""
    return [s.counts for s in strategies if isinstance(s, ItemKNN)]
