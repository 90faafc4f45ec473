"""Two factorization machines over the same features: a rating regressor and a ranker.

Ratings train the regressor (RMSE); every interaction trains the ranker, a classifier of
"the user interacts with this item in this context", with sampled negatives. The ranker's
score splits into a query (user + context) and an item vector, so top-K is an inner product
search (docs/architecture.md):

    logit(u, c, i) = const(u, c) + b_i + q(u, c) . e_i
    q = sum_{f in user side} x_f v_f,   e_i = sum_{f in item side} x_f v_f,
    b_i = sum_{f in item side} x_f w_f + pairwise terms inside the item side.

The index holds ``[b_i, e_i]`` and is searched with ``[1, q]``.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Sequence
from functools import partial
from typing import Any, NamedTuple

import numpy as np
from river import optim

from streamer.beside import BESIDE_MIN, Beside
from streamer.features import USER_PREFIX, Features, own_features
from streamer.model import sgd_kernel, side_kernel
from streamer.model.encoding import Encoded, QuerySides
from streamer.model.fast_fm import FastFMClassifier, FastFMRegressor, Flat, Rows
from streamer.model.neighbours import NeighbourRater
from streamer.model.part_store import PartStore
from streamer.model.rating_mix import RatingMix
from streamer.model.rating_range import RatingRange
from streamer.model.sgd_kernel import Parts
from streamer.model.side_kernel import side_sums
from streamer.settings import Settings

#: How much each interaction type says about a user's taste, for the ranker.
POSITIVE_WEIGHTS = {"click": 1.0, "view": 0.5, "purchase": 2.0, "rating": 1.0}


class Interaction(NamedTuple):
    """One click to learn from: both sides, its type and value, and sampled negatives."""

    user_x: Features
    item_x: Features
    kind: str
    value: float | None
    negatives: Sequence[Features] = ()
    user: str = ""  # who (for observers of the predictions; the model reads the sides)


class RecModel:
    """The recommender's model; learns one event at a time (``learn_one``).

    Examples
    --------
    >>> m = RecModel(Settings(n_factors=4, negatives=0))
    >>> u, i = {"user=1": 1.0, "hour=9": 1.0}, {"item=7": 1.0, "tag=drama": 1.0}
    >>> before = [m.learn_one(u, i, "rating", 5.0, negatives=[]) for _ in range(50)]
    >>> before[0] < before[-1]  # each rating predicted before it is learned
    True
    >>> m.predict_rating(u, i) > 4.0
    True
    >>> q, e = m.query_vectors([u]), m.item_vectors([i])
    >>> q.shape, e.shape
    ((1, 5), (1, 5))
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        k = settings.n_factors
        self.rater = FastFMRegressor(
            **_fm_params(settings, settings.rating_lr, settings.seed),
            intercept=settings.rating_prior,
        )
        self.ranker = FastFMClassifier(
            **_fm_params(settings, settings.ranking_lr, settings.seed + 1)
        )
        self.rater.max_norm = self.ranker.max_norm = settings.max_norm
        if settings.sync_interval_s > 0:  # several workers: a key starts alike in every one
            self.rater.table.keyed, self.ranker.table.keyed = settings.seed, settings.seed + 1
        self._side = settings.rating_side_weight
        self.range = RatingRange(default=(settings.rating_min, settings.rating_max))
        # the user's recent ratings of similar items, blended with the rater's prediction
        self.neighbours = NeighbourRater(
            last=settings.rating_neighbours, prior=settings.rating_prior
        )
        self.rating_mix = RatingMix()
        self.dim = k + 1
        self._items: dict[str, tuple[Features, int]] = {}  # item key -> (features, slot)
        self._ranking_items = PartStore()  # item sides by slot, as the ranker's rows
        self._rating_items = PartStore()  # and as the rater's (side-weighted)
        self.version = 0
        self.resets = 0
        self.nonfinite = 0  # vector entries that were not finite (served as 0)
        sgd_kernel.warm_up()  # compile (or load from numba's cache) now, not in a batch
        side_kernel.warm_up()

    # -- encoding -------------------------------------------------------------------------

    def _slot(self, item_x: Features) -> int:
        """The item side's slot in the part stores, encoded again when its features changed
        (an item is keyed by its first feature, ``item=...``)."""
        key = _key(item_x)
        cached = self._items.get(key)
        if cached is not None and cached[0] is item_x:
            return cached[1]
        slot = len(self._items) if cached is None else cached[1]
        self._items[key] = (item_x, slot)
        encoded = Encoded(item_x, self.ranker, self.rater, self._side)
        self._ranking_items.put(slot, *encoded.ranking)
        self._rating_items.put(slot, *encoded.rating)
        return slot

    def _slots(self, sides: Sequence[Features]) -> list[int]:
        """:meth:`_slot` of each of ``sides``, in order, its cache read inline (an event's item
        and its negatives: ~9 sides)."""
        cache, slot = self._items, self._slot
        return [
            c[1] if (c := cache.get(next(iter(x)))) is not None and c[0] is x else slot(x)
            for x in sides
        ]

    def add_item(self, item_x: Features) -> None:
        """Make the rows of a new (or changed) item side now, where it arrives in the stream:
        rows are initialised in arrival order, whenever they are first read."""
        self._slot(item_x)

    def _user(self, user_x: Features) -> Encoded:
        return Encoded(user_x, self.ranker, self.rater, self._side)

    # -- learning -------------------------------------------------------------------------

    def learn_one(
        self,
        user_x: Features,
        item_x: Features,
        kind: str,
        value: float | None,
        negatives: Sequence[Features],
        user: str = "",
    ) -> float | None:
        """Learn one interaction; ``negatives`` are item sides the user did not choose.

        Returns the rating predicted just before learning it (None if not a rating)."""
        return self.learn_batch([Interaction(user_x, item_x, kind, value, negatives, user)])[0]

    def learn_batch(self, batch: Sequence[Interaction]) -> list[float | None]:
        """Learn a micro-batch event by event, in order (one compiled call per model).

        Each event is one SGD step per model: the rater's on its rating, the ranker's on its
        positive and its negatives together. Returns, per event, the rating predicted just
        before learning it (prequential), clipped to the range of the ratings before it.
        """
        # rows are made event by event, in order (query side, item, negatives): the model is
        # the same however the stream is cut into batches
        users = QuerySides(self.ranker, self.rater, self._side)
        rated: list[int] = []  # events with a rating
        ratings: list[float] = []
        rated_items: list[int] = []
        own: list[int] = []  # the ranker's samples: item part, label, weight
        labels: list[bool] = []
        weights: list[float] = []
        starts = [0]
        for n, event in enumerate(batch):
            kind, value = event.kind, event.value
            users.add(event.user_x)
            skip = kind == "skip"  # (learned as a negative: no negatives of its own)
            item, *negatives = self._slots([event.item_x, *(() if skip else event.negatives)])
            if kind == "rating" and value is not None:
                rated.append(n)
                ratings.append(value)
                rated_items.append(item)
            own.append(item)
            if skip:
                labels.append(False)
                weights.append(1.0)
            else:
                positive = (
                    kind != "rating" or value is None or value >= self.settings.positive_rating
                )
                labels.append(True)
                weights.append(POSITIVE_WEIGHTS.get(kind, 1.0) if positive else 0.5)
                own.extend(negatives)
                labels.extend([False] * len(negatives))
                weights.extend([1.0] * len(negatives))
            starts.append(len(labels))
        predicted: list[float | None] = [None] * len(batch)
        keys = [_user_key(batch[n].user_x) for n in rated]
        known = [at for at, user in enumerate(keys) if user and self.settings.rating_neighbours]
        # the rating neighbourhood learns on another core while the two machines learn here
        # (its own arrays, in the same order: the same predictions, sooner)
        with Beside(
            partial(
                self.neighbours.learn_many,
                [keys[at] for at in known],
                [rated_items[at] for at in known],
                [ratings[at] for at in known],
            ),
            worth=len(known) >= BESIDE_MIN,
        ) as neighbourhood:
            if ratings:
                raw = self._learn(
                    self.rater,
                    users.rating(rated),
                    self._rating_items.parts(),
                    rated_items,
                    ratings,
                    [1.0] * len(ratings),
                    list(range(len(ratings) + 1)),
                )
            if batch:
                pooled = self._ranking_items.parts()
                self._learn(self.ranker, users.ranking(), pooled, own, labels, weights, starts)
        if ratings:
            raws = self._finite(raw).tolist()
            near = neighbourhood.result().tolist()
            for at, guess in zip(known, near, strict=True):
                raws[at] = self.rating_mix.learn(raws[at], guess, ratings[at])
            for n, y, value in zip(rated, raws, ratings, strict=True):
                predicted[n] = self.range.clip(y)
                self.range.see(value)
        self.version += len(batch)
        return predicted

    def _learn(
        self,
        fm: FastFMRegressor | FastFMClassifier,
        shared: Parts,
        own: Parts,
        sample_own: list[int],
        ys: list[float] | list[bool],
        ws: list[float],
        starts: list[int],
    ) -> np.ndarray:
        """Events learned in order, with a guard against divergence: an event whose step is
        not finite is skipped and its features forgotten (they re-initialise). Returns the
        raw outputs before each event's step."""
        raw, ok = fm.learn_events(shared, own, sample_own, ys, ws, starts)
        if fm.table.shared is not None:  # several workers: how often each row moved
            sizes = np.diff(starts)
            events = np.repeat(np.arange(len(sizes)), sizes)
            fm.table.touch(shared.rows_in(events), own.rows_in(np.asarray(sample_own, np.int64)))
        for e in np.flatnonzero(~ok).tolist():
            parts = [own.rows_of(sample_own[s]) for s in range(starts[e], starts[e + 1])]
            fm.reset(np.concatenate([shared.rows_of(e), *parts]))
            self.resets += 1
        return raw

    # -- predicting -----------------------------------------------------------------------

    def predict_rating(self, user_x: Features, item_x: Features) -> float:
        """The rating the user would give, clipped to the range of the ratings seen so far."""
        item = self._slot(item_x)
        flat = Flat.of([self._user(user_x).rating, self._rating_items.part(item)], 2)
        y = float(self._finite(self.rater.raw_flat(flat))[0])
        user = _user_key(user_x)
        if self.settings.rating_neighbours and user:
            y = self.rating_mix.predict(y, self.neighbours.predict_one(user, item))
        return self.range.clip(y)

    def _finite(self, raw: np.ndarray) -> np.ndarray:
        """The rater's raw outputs, the intercept (or 0) where they are not finite."""
        fallback = self.rater.intercept if math.isfinite(self.rater.intercept) else 0.0
        return np.where(np.isfinite(raw), raw, fallback)

    def score(self, user_x: Features, item_x: Features) -> float:
        """The ranker's logit over the features it has learned (creates no parameters)."""
        return float(self.ranker.intercept + self._found_sums([user_x | item_x])[0][0])

    def forget(self, features: Sequence[str]) -> None:
        """Drop ``features``' parameters from both models (an expired user's id), and the
        neighbourhood's memory of users among them."""
        self.rater.table.forget(features)
        self.ranker.table.forget(features)
        for feature in features:
            self.neighbours.forget(feature)

    def forget_item(self, item_x: Features) -> None:
        """Drop an expired item's own rows (its ``item=`` feature and its ``prev=`` feature of
        the query side, in both models, and its neighbourhood row); its content features stay,
        shared with other items. Its slot is kept and encoded again if the item comes back."""
        key = _key(item_x)
        cached = self._items.get(key)
        if cached is not None:
            self._items[key] = (_STALE, cached[1])
            self.neighbours.forget_item(cached[1])
        own = own_features(item_x)
        self.rater.table.forget(own)
        self.ranker.table.forget(own)

    def compact_items(self, dead: Collection[str]) -> None:
        """Drop the slots of the item keys ``dead`` (expired items, whose own rows are gone:
        :meth:`forget_item`) and renumber the others in their order, in the part stores and
        the rating neighbourhood: memory for the items kept, not every item ever seen."""
        mapping = np.full(len(self._items), -1, np.int64)
        kept = {key: entry for key, entry in self._items.items() if key not in dead}
        slots = np.array(sorted(slot for _, slot in kept.values()), np.int64)
        mapping[slots] = np.arange(len(slots))
        self._items = {key: (x, int(mapping[slot])) for key, (x, slot) in kept.items()}
        self._ranking_items.renumber(mapping)
        self._rating_items.renumber(mapping)
        self.neighbours.renumber_items(mapping)

    def item_slots(self) -> dict[str, int]:
        """Every item side's slot (the rating neighbourhood's item ids), by item key."""
        return {key: slot for key, (_, slot) in self._items.items()}

    def knows(self, feature: str) -> bool:
        """Whether the ranker has learned anything about ``feature``."""
        row = self.ranker.table.ids.get(feature)
        return row is not None and bool(self.ranker.table.learned[row])

    def query_vectors(self, users: Sequence[Features]) -> np.ndarray:
        """``[1, q]`` per user side; features not learned yet contribute nothing."""
        out = np.ones((len(users), self.dim), np.float32)
        if users:
            out[:, 1:] = self._found_sums(users)[1]
        return self._guarded(out)

    def item_vectors(self, items: Sequence[Features]) -> np.ndarray:
        """``[b_i, e_i]`` per item side; features not learned yet contribute nothing."""
        slots = np.fromiter((self._slot(i) for i in items), np.int64, len(items))
        bias, total = self._learned_sums(self._ranking_items.parts(), slots)
        out = np.empty((len(items), self.dim), np.float32)
        out[:, 0], out[:, 1:] = bias, total  # b_i: the item side's own terms
        return self._guarded(out)

    def _guarded(self, vectors: np.ndarray) -> np.ndarray:
        """``vectors`` with entries that are not finite set to 0, and counted."""
        bad = ~np.isfinite(vectors)
        if bad.any():
            self.nonfinite += int(bad.sum())
            vectors[bad] = 0.0
        return vectors

    @property
    def clamped(self) -> int:
        """Max-norm clamps of both models so far."""
        return self.rater.clamped + self.ranker.clamped

    def _learned_sums(self, parts: Parts, which: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Per part of ``which``, over its learned features alone (rows that are -1, never
        seen, or never learned contribute nothing): the ranker's linear and pairwise terms
        inside the part, and ``sum x_f v_f``."""
        bias, total = np.empty(len(which)), np.empty((len(which), self.dim - 1))
        table = self.ranker.table
        side_sums(table.weights, table.latents, table.learned, *parts, which, bias, total)
        return bias, total

    def _found_sums(self, sides: Sequence[Features]) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`_learned_sums` of sides that are not stored (users with their context),
        creating no parameters for features never seen."""
        parts = Parts.of([_find(self.ranker, x) for x in sides])
        return self._learned_sums(parts, np.arange(len(sides)))


#: The features of an expired item's slot: never the item's own, so it is encoded again.
_STALE: Features = {}


def _key(side: Features) -> str:
    """A side's key: its first feature (``user=...``, ``item=...``)."""
    return next(iter(side))


def _user_key(side: Features) -> str:
    """A query side's user id feature, "" for a user without one (``user_min_events``)."""
    first = next(iter(side), "")
    return first if first.startswith(USER_PREFIX) else ""


def _find(fm: FastFMClassifier, x: Features) -> Rows:
    return fm.table.find(list(x)), np.fromiter(x.values(), float, len(x))


def _fm_params(settings: Settings, lr: float, seed: int) -> dict[str, Any]:
    """Biases learn at half the latents' rate, as in River's MovieLens BiasedMF example."""
    return {
        "n_factors": settings.n_factors,
        "weight_optimizer": optim.SGD(lr / 2),
        "latent_optimizer": optim.SGD(lr),
        "l2_weight": settings.l2,
        "l2_latent": settings.l2,
        "clip_gradient": 5.0,
        "seed": seed,
    }
