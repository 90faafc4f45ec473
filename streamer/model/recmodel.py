"""Two factorization machines over the same features: a rating regressor and a ranker.

Ratings train the regressor (RMSE); every interaction trains the ranker, a classifier of
"the user interacts with this item in this context", with sampled negatives. The ranker's
score splits into a query (user + context) and an item vector, so top-K is an inner product
search (DESIGN.md):

    logit(u, c, i) = const(u, c) + b_i + q(u, c) . e_i
    q = sum_{f in user side} x_f v_f,   e_i = sum_{f in item side} x_f v_f,
    b_i = sum_{f in item side} x_f w_f + pairwise terms inside the item side.

The index holds ``[b_i, e_i]`` and is searched with ``[1, q]``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from river import optim

from streamer.features import Features
from streamer.model.fast_fm import FastFMClassifier, FastFMRegressor
from streamer.model.rating_range import RatingRange
from streamer.settings import Settings

#: How much each interaction type says about a user's taste, for the ranker.
POSITIVE_WEIGHTS = {"click": 1.0, "view": 0.5, "purchase": 2.0, "rating": 1.0}


class RecModel:
    """The recommender's model; learns one event at a time (``learn_one``).

    Examples
    --------
    >>> m = RecModel(Settings(n_factors=4, negatives=0))
    >>> u, i = {"user=1": 1.0, "hour=9": 1.0}, {"item=7": 1.0, "tag=drama": 1.0}
    >>> for _ in range(50):
    ...     m.learn_one(u, i, "rating", 5.0, negatives=[])
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
        self._side = settings.rating_side_weight
        self.range = RatingRange(default=(settings.rating_min, settings.rating_max))
        self.dim = k + 1
        self._zero = np.zeros(k)
        self.version = 0
        self.resets = 0

    # -- learning -------------------------------------------------------------------------

    def learn_one(
        self,
        user_x: Features,
        item_x: Features,
        kind: str,
        value: float | None,
        negatives: Sequence[Features],
    ) -> None:
        """Learn one interaction; ``negatives`` are item sides the user did not choose."""
        x = user_x | item_x
        if kind == "rating" and value is not None:
            self.range.see(value)
            self._guarded(self.rater, [self._rating_features(x)], [value], [1.0])
        if kind == "skip":
            self._guarded(self.ranker, [x], [False], [1.0])
        else:
            weight = POSITIVE_WEIGHTS.get(kind, 1.0)
            if kind == "rating" and value is not None and value < self.settings.positive_rating:
                weight = 0.5
            samples = [x, *(user_x | negative for negative in negatives)]
            labels = [True] + [False] * len(negatives)
            self._guarded(self.ranker, samples, labels, [weight] + [1.0] * len(negatives))
        self.version += 1

    def _guarded(
        self,
        fm: FastFMRegressor | FastFMClassifier,
        xs: list[Features],
        ys: list[float] | list[bool],
        ws: list[float],
    ) -> None:
        fm.learn_many(xs, list(ys), ws)
        if not fm.finite:
            # A diverging update: forget the parameters of these features (they re-initialise).
            for x in xs:
                for feature in x:
                    fm.weights.pop(feature, None)
                    fm.latents.pop(feature, None)
            if not math.isfinite(fm.intercept):
                fm.intercept = 0.0
            fm.finite = True
            self.resets += 1

    # -- predicting -----------------------------------------------------------------------

    def predict_rating(self, user_x: Features, item_x: Features) -> float:
        """The rating the user would give, clipped to the range of the ratings seen so far."""
        y = self.rater._raw_dot(self._rating_features(user_x | item_x))
        if not math.isfinite(y):
            y = self.rater.intercept if math.isfinite(self.rater.intercept) else 0.0
        return float(self.range.clip(y))

    def _rating_features(self, x: Features) -> Features:
        """Side features (context, content) weigh ``rating_side_weight`` in the rating model:
        shared by many events, at full weight they take steps too large for SGD."""
        side = self._side
        return {f: (v if f.startswith(("user=", "item=")) else v * side) for f, v in x.items()}

    def score(self, user_x: Features, item_x: Features) -> float:
        """The ranker's logit (does not create parameters for unseen features)."""
        return float(self.ranker._raw_dot(user_x | item_x))

    def knows(self, feature: str) -> bool:
        return feature in self.ranker.latents

    def query_vectors(self, users: Sequence[Features]) -> np.ndarray:
        """``[1, q]`` per user side; unseen features contribute nothing."""
        out = np.ones((len(users), self.dim), np.float32)
        if users:
            out[:, 1:] = self._side_sums(users)[0]
        return out

    def item_vectors(self, items: Sequence[Features]) -> np.ndarray:
        """``[b_i, e_i]`` per item side; unseen features contribute nothing."""
        out = np.zeros((len(items), self.dim), np.float32)
        if items:
            total, squares, linear = self._side_sums(items)
            out[:, 0] = linear + 0.5 * (np.einsum("ij,ij->i", total, total) - squares)
            out[:, 1:] = total
        out[~np.isfinite(out)] = 0.0
        return out

    def _side_sums(self, sides: Sequence[Features]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per side: sum x_f v_f, sum x_f^2 |v_f|^2 and sum x_f w_f, all sides in one pass."""
        keys: list[str] = []
        values: list[float] = []
        starts = np.zeros(len(sides), np.int64)
        for row, x in enumerate(sides):
            starts[row] = len(keys)
            keys.extend(x)
            values.extend(x.values())
        latents, weights, zero = self.ranker.latents, self.ranker.weights, self._zero
        v = np.array([latents.get(f, zero) for f in keys], dtype=float).reshape(len(keys), -1)
        xs = np.asarray(values, dtype=float)
        w = np.fromiter((weights.get(f, 0.0) for f in keys), float, len(keys))
        total = np.add.reduceat(xs[:, None] * v, starts, axis=0)
        squares = np.add.reduceat(xs * xs * np.einsum("ij,ij->i", v, v), starts)
        linear = np.add.reduceat(xs * w, starts)
        return total, squares, linear


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
