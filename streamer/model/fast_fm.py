"""River's factorization machines, with the per-sample work done on stacked latent vectors.

The model, its loss, its optimizers and its parameters are River's own; the pairwise term
uses Rendle's identity ``sum_{i<j} <v_i, v_j> x_i x_j = (||sum_i x_i v_i||^2 -
sum_i x_i^2 ||v_i||^2) / 2`` on one ``(p, k)`` matrix instead of ``p^2`` dot products, and
with plain SGD on the latents one learning step is a few numpy calls (other latent optimizers
fall back to River's loop). Every step also reports whether the parameters stayed finite.

Examples
--------
>>> from river import facto, optim
>>> x = {"user=a": 1.0, "item=b": 1.0, "tag=c": 0.5}
>>> slow = facto.FMRegressor(seed=1, latent_optimizer=optim.SGD(0.05))
>>> fast = FastFMRegressor(seed=1, latent_optimizer=optim.SGD(0.05))
>>> for _ in range(20):
...     slow.learn_one(x, 4.0); fast.learn_one(x, 4.0)
>>> abs(slow.predict_one(x) - fast.predict_one(x)) < 1e-9
True
"""

from __future__ import annotations

from typing import Any

import numpy as np
from river import facto, optim, utils


class _FastPairwise:
    latents: Any
    weights: Any
    intercept: float
    intercept_lr: Any
    loss: Any
    clip_gradient: float
    weight_optimizer: Any
    latent_optimizer: Any
    l1_weight: float
    l2_weight: float
    l1_latent: float
    l2_latent: float

    finite = True  # whether the last learning step left the touched parameters finite

    def _calculate_interactions(self, x: dict[str, float]) -> np.float64:
        latents = self.latents
        xs = np.fromiter(x.values(), float, len(x))
        v = np.stack([latents[j] for j in x])
        total = xs @ v
        return np.float64(0.5 * (total @ total - (xs * xs) @ np.einsum("ij,ij->i", v, v)))

    def learn_numeric(self, x: dict[str, float], y: Any, w: float = 1.0) -> None:
        """``learn_one`` for features that are already numbers (no one-hot pass)."""
        if self.sample_normalization:  # type: ignore[attr-defined]
            self.learn_one(x, y, w=w)  # type: ignore[attr-defined]
        else:
            self._learn_one(x, y, w)

    def _learn_one(self, x: dict[str, float], y: Any, w: float = 1.0) -> None:
        plain = (
            type(self.latent_optimizer) is optim.SGD and type(self.weight_optimizer) is optim.SGD
        )
        if not plain or self.l1_latent or self.l1_weight or not x:
            super()._learn_one(x, y, w=w)  # type: ignore[misc]
            return
        with np.errstate(over="ignore", invalid="ignore"):
            self._sgd_step(x, y, w)

    def _sgd_step(self, x: dict[str, float], y: Any, w: float) -> None:
        keys = list(x)
        xs = np.fromiter(x.values(), float, len(x))
        latents, weights = self.latents, self.weights
        v = np.stack([latents[j] for j in keys])
        total = xs @ v
        squares = (xs * xs) @ np.einsum("ij,ij->i", v, v)
        raw = self.intercept + sum(weights[j] * xj for j, xj in x.items())
        raw += 0.5 * (total @ total - squares)
        g = self.loss.gradient(y_true=y, y_pred=raw)
        g = utils.math.clamp(g, minimum=-self.clip_gradient, maximum=self.clip_gradient) * w

        weight_sgd = self.weight_optimizer
        self.intercept -= self.intercept_lr.get(weight_sgd.n_iterations) * g
        step, l2 = weight_sgd.learning_rate, self.l2_weight
        for j, xj in x.items():  # River's SGD step on the weights, without the dict round trip
            weights[j] -= step * (g * xj + l2 * weights[j])
        weight_sgd.n_iterations += 1

        lr = self.latent_optimizer.learning_rate
        v -= lr * (g * (xs[:, None] * total - v * (xs * xs)[:, None]) + self.l2_latent * v)
        for j, row in zip(keys, v, strict=True):
            latents[j] = row
        self.latent_optimizer.n_iterations += 1
        self.finite = bool(np.isfinite(raw) and np.isfinite(v).all())

    def learn_many(self, xs: list[dict[str, float]], ys: list[Any], ws: list[float]) -> None:
        """One SGD step on a few samples at once (a positive and its sampled negatives).

        Every sample's gradient is taken at the same parameters and the steps are summed:
        mini-batch SGD over the samples of one event, in a handful of numpy calls.
        """
        plain = (
            type(self.latent_optimizer) is optim.SGD and type(self.weight_optimizer) is optim.SGD
        )
        if len(xs) == 1 or not plain or self.l1_latent or self.l1_weight:
            for x, y, w in zip(xs, ys, ws, strict=True):
                self.learn_numeric(x, y, w)
            return
        with np.errstate(over="ignore", invalid="ignore"):
            self._sgd_many(xs, ys, ws)

    def _sgd_many(self, xs: list[dict[str, float]], ys: list[Any], ws: list[float]) -> None:
        columns: dict[str, int] = {}
        for x in xs:
            for j in x:
                columns.setdefault(j, len(columns))
        keys = list(columns)
        matrix = np.zeros((len(xs), len(keys)))
        for row, x in enumerate(xs):
            matrix[row, [columns[j] for j in x]] = list(x.values())
        latents, weights = self.latents, self.weights
        v = np.stack([latents[j] for j in keys])
        w_vec = np.fromiter((weights[j] for j in keys), float, len(keys))
        totals = matrix @ v
        squares = (matrix * matrix) @ np.einsum("ij,ij->i", v, v)
        raw = (
            self.intercept
            + matrix @ w_vec
            + 0.5 * (np.einsum("ij,ij->i", totals, totals) - squares)
        )
        clip = self.clip_gradient
        g = np.array(
            [
                min(max(self.loss.gradient(y_true=y, y_pred=float(r)), -clip), clip) * w
                for y, r, w in zip(ys, raw, ws, strict=True)
            ]
        )

        weight_sgd = self.weight_optimizer
        self.intercept -= self.intercept_lr.get(weight_sgd.n_iterations) * float(g.sum())
        w_vec -= weight_sgd.learning_rate * (matrix.T @ g + self.l2_weight * w_vec)
        for j, value in zip(keys, w_vec.tolist(), strict=True):
            weights[j] = value
        weight_sgd.n_iterations += 1

        gx = g[:, None] * matrix  # (samples, features)
        gradient = gx.T @ totals - ((gx * matrix).sum(axis=0))[:, None] * v + self.l2_latent * v
        v -= self.latent_optimizer.learning_rate * gradient
        for j, row in zip(keys, v, strict=True):
            latents[j] = row
        self.latent_optimizer.n_iterations += 1
        self.finite = bool(np.isfinite(raw).all() and np.isfinite(v).all())


class FastFMRegressor(_FastPairwise, facto.FMRegressor):
    """``river.facto.FMRegressor`` with the fast learning step."""


class FastFMClassifier(_FastPairwise, facto.FMClassifier):
    """``river.facto.FMClassifier`` with the fast learning step."""
