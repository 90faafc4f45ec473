"""Reference models, run on the same stream in the same pass as streamrec's model."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from river import optim, reco

from streamer.model.rating_range import RatingRange
from streamer.settings import Settings
from streamer.strategies import CoCounts, ItemKNN, PopularInContext, RecentItems, Strategy


class GlobalMean:
    """The running mean rating.

    >>> m = GlobalMean(); m.learn("u", "i", 4.0); m.learn("u", "j", 2.0); m.predict("v", "k")
    3.0
    """

    name = "global mean"

    def __init__(self) -> None:
        self.n, self.mean = 0, 0.0

    def predict(self, user: str, item: str) -> float:
        return self.mean

    def learn(self, user: str, item: str, y: float) -> None:
        self.n += 1
        self.mean += (y - self.mean) / self.n


class RiverRating:
    """A River ``reco`` regressor, clipped to the ratings seen (River's ``PredClipper``)."""

    def __init__(self, name: str, model: Any) -> None:
        self.name, self.model, self.range = name, model, RatingRange()

    def predict(self, user: str, item: str) -> float:
        return self.range.clip(float(self.model.predict_one(user, item)))

    def learn(self, user: str, item: str, y: float) -> None:
        self.range.see(y)
        self.model.learn_one(user, item, y)


def river_baseline() -> RiverRating:
    """``reco.Baseline`` as in River's MovieLens example."""
    return RiverRating(
        "River Baseline",
        reco.Baseline(optimizer=optim.SGD(0.025), l2=0.0, initializer=optim.initializers.Zeros()),
    )


def river_biased_mf() -> RiverRating:
    """``reco.BiasedMF`` with the parameters of River's MovieLens example (the anchor)."""
    return RiverRating(
        "River BiasedMF",
        reco.BiasedMF(
            n_factors=10,
            bias_optimizer=optim.SGD(0.025),
            latent_optimizer=optim.SGD(0.05),
            weight_initializer=optim.initializers.Zeros(),
            latent_initializer=optim.initializers.Normal(mu=0.0, sigma=0.1, seed=73),
            l2_bias=0.0,
            l2_latent=0.0,
        ),
    )


def list_baselines(settings: Settings) -> list[Strategy]:
    """What a team would ship without a model: item-kNN over the last 5 and 20 items, with
    co-occurrences counted within both windows the model's own kNN strategies use, the user's
    recent items, popularity overall and in context (each a candidate strategy). The four
    item-kNN share their counts (:class:`CoCounts`: learned once, the same figures)."""
    windows = list(dict.fromkeys((settings.knn_near_window, settings.knn_window)))
    counts = CoCounts(windows, settings.knn_neighbours)
    knn = [
        ItemKNN(last, window, name=f"item-kNN (last {last}, window {window})", counts=counts)
        for last in (5, 20)
        for window in windows
    ]
    return [
        *knn,
        RecentItems(),
        PopularInContext(global_only=True, name="popularity"),
        PopularInContext(name="popularity in context"),
    ]


class TruncatedSVD:
    """A batch reference, fit once on the first part of the stream and frozen.

    Ratings: global mean + user and item biases + a rank-``k`` SVD of the residuals.
    Top-K: PureSVD (Cremonesi et al., 2010), scores ``r_u V V^T`` of the rating matrix; users
    it was not fit on get the items most rated in the fit data (what a deployment would serve).
    """

    name = "truncated SVD (batch, first 80%)"

    def __init__(self, k: int = 20) -> None:
        self.k = k
        self.fitted = False

    def fit(self, ratings: Sequence[tuple[str, str, float]]) -> None:
        from scipy.sparse import csr_matrix
        from scipy.sparse.linalg import svds

        users = {u: n for n, u in enumerate(dict.fromkeys(u for u, _, _ in ratings))}
        items = {i: n for n, i in enumerate(dict.fromkeys(i for _, i, _ in ratings))}
        rows = np.array([users[u] for u, _, _ in ratings])
        cols = np.array([items[i] for _, i, _ in ratings])
        y = np.array([r for _, _, r in ratings])
        self.mu = float(y.mean())
        shape = (len(users), len(items))
        self.bu = _shrunk_means(rows, y - self.mu, shape[0])
        self.bi = _shrunk_means(cols, y - self.mu - self.bu[rows], shape[1])
        residual = y - self.mu - self.bu[rows] - self.bi[cols]
        k = max(1, min(self.k, min(shape) - 1))
        u, s, vt = svds(csr_matrix((residual, (rows, cols)), shape=shape), k=k)
        self.user_factors, self.item_factors = u * s, vt.T
        _, _, vt_pure = svds(csr_matrix((y, (rows, cols)), shape=shape).astype(float), k=k)
        self.pure = vt_pure.T
        self.matrix = csr_matrix((y, (rows, cols)), shape=shape)
        self.users, self.items = users, items
        self.item_names = list(items)
        self.popular = [self.item_names[i] for i in np.argsort(-np.bincount(cols))]
        self.low, self.high = float(y.min()), float(y.max())
        self.fitted = True

    def predict(self, user: str, item: str) -> float:
        u, i = self.users.get(user), self.items.get(item)
        y = (
            self.mu
            + (self.bu[u] if u is not None else 0.0)
            + (self.bi[i] if i is not None else 0.0)
        )
        if u is not None and i is not None:
            y += float(self.user_factors[u] @ self.item_factors[i])
        return min(max(y, self.low), self.high)

    def top_k(self, user: str, k: int, exclude: set[str]) -> list[str]:
        u = self.users.get(user)
        if u is None:
            ranked = self.popular
        else:
            scores = np.asarray((self.matrix[u] @ self.pure) @ self.pure.T).ravel()
            ranked = [self.item_names[i] for i in np.argsort(-scores)]
        out = []
        for name in ranked:
            if name not in exclude:
                out.append(name)
                if len(out) == k:
                    break
        return out


def _shrunk_means(index: np.ndarray, values: np.ndarray, size: int, shrink: float = 10.0) -> Any:
    sums = np.bincount(index, weights=values, minlength=size)
    counts = np.bincount(index, minlength=size)
    return sums / (counts + shrink)
