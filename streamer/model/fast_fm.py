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

    def _learn_one(self, x: dict[str, float], y: Any, w: float = 1.0) -> None:
        sgd = type(self.latent_optimizer) is optim.SGD
        if not sgd or self.l1_latent or not x:
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

        self.intercept -= self.intercept_lr.get(self.weight_optimizer.n_iterations) * g
        l1, l2, sign = self.l1_weight, self.l2_weight, utils.math.sign
        gradient = {j: g * xj + l1 * sign(weights[j]) + l2 * weights[j] for j, xj in x.items()}
        self.weights = self.weight_optimizer.step(w=weights, g=gradient)

        lr = self.latent_optimizer.learning_rate
        v -= lr * (g * (xs[:, None] * total - v * (xs * xs)[:, None]) + self.l2_latent * v)
        for j, row in zip(keys, v, strict=True):
            latents[j] = row
        self.latent_optimizer.n_iterations += 1
        self.finite = bool(np.isfinite(v).all() and np.isfinite(self.intercept))


class FastFMRegressor(_FastPairwise, facto.FMRegressor):
    """``river.facto.FMRegressor`` with the fast learning step."""


class FastFMClassifier(_FastPairwise, facto.FMClassifier):
    """``river.facto.FMClassifier`` with the fast learning step."""
