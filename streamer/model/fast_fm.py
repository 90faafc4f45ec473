"""River's factorization machines on a parameter table, with a vectorised SGD step.

The model, its loss, its optimizers and its initializers are River's own, and River's
``learn_one`` / ``predict_one`` work as before; the parameters live in a
:class:`~streamer.model.table.ParameterTable` (two numpy arrays, one row per feature) and with
plain SGD a learning step is a few numpy calls on the rows of the sample's features. The
pairwise term uses Rendle's identity ``sum_{i<j} <v_i, v_j> x_i x_j = (||sum_i x_i v_i||^2 -
sum_i x_i^2 ||v_i||^2) / 2`` on one ``(p, k)`` gather instead of ``p^2`` dot products. Other
optimizers, L1 and sample normalisation fall back to River's own step. Every step reports
whether the parameters it touched stayed finite.

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

from collections.abc import Sequence
from typing import Any

import numpy as np
from river import facto, optim

from streamer.model.table import LatentView, ParameterTable, WeightView

#: A sample's features as rows of the table and their values.
Rows = tuple[np.ndarray, np.ndarray]


class _FastPairwise:
    n_factors: int
    weights: Any
    latents: Any
    weight_initializer: Any
    latent_initializer: Any
    intercept: float
    intercept_lr: Any
    loss: Any
    clip_gradient: float
    weight_optimizer: Any
    latent_optimizer: Any
    sample_normalization: bool
    l1_weight: float
    l2_weight: float
    l1_latent: float
    l2_latent: float

    table: ParameterTable
    shared_steps = 4.0  # see learn_flat
    finite = True  # whether the last learning step left the touched parameters finite

    def _init_latents(self) -> Any:  # River's hook types it as a defaultdict
        """River's hook: the weights and latents become views of one parameter table."""
        self.table = ParameterTable(
            self.n_factors, self.weight_initializer, self.latent_initializer
        )
        self.weights = WeightView(self.table)
        return LatentView(self.table)

    @property
    def plain(self) -> bool:
        """Plain SGD without L1: the case the vectorised step implements."""
        return (
            type(self.latent_optimizer) is optim.SGD
            and type(self.weight_optimizer) is optim.SGD
            and not (self.l1_latent or self.l1_weight or self.sample_normalization)
        )

    def encode(self, x: dict[str, float]) -> Rows:
        """``x`` as (rows, values); creates rows for new features, as River's dicts would."""
        return self.table.rows(x), np.fromiter(x.values(), float, len(x))

    # -- River's hooks ---------------------------------------------------------------------

    def _calculate_interactions(self, x: dict[str, float]) -> np.float64:
        rows, xs = self.encode(x)
        v = self.table.latents[rows]
        total = xs @ v
        return np.float64(0.5 * (total @ total - (xs * xs) @ np.einsum("ij,ij->i", v, v)))

    def _learn_one(self, x: dict[str, float], y: Any, w: float = 1.0) -> None:
        if not self.plain or not x:
            super()._learn_one(x, y, w=w)  # type: ignore[misc]
            return
        self.learn_flat(Flat.of([self.encode(x)]), [y], [w])

    # -- the fast path ---------------------------------------------------------------------

    def raw_flat(self, flat: Flat) -> np.ndarray:
        """The raw outputs of many encoded samples at once."""
        return self.forward(flat)[0]

    def learn_numeric(self, x: dict[str, float], y: Any, w: float = 1.0) -> None:
        """``learn_one`` for features that are already numbers (no one-hot pass)."""
        self.learn_many([x], [y], [w])

    def learn_many(self, xs: list[dict[str, float]], ys: list[Any], ws: list[float]) -> None:
        """One SGD step on several samples at once (see :meth:`learn_flat`)."""
        if not self.plain:  # River's own path, sample normalisation included
            for x, y, w in zip(xs, ys, ws, strict=True):
                self.learn_one(x, y, w=w)  # type: ignore[attr-defined]
            return
        self.learn_flat(Flat.of([self.encode(x) for x in xs]), ys, ws)

    def learn_flat(
        self,
        flat: Flat,
        ys: Sequence[Any],
        ws: Sequence[float],
        events: np.ndarray | None = None,
    ) -> np.ndarray:
        """One plain-SGD step on encoded samples, in a fixed number of numpy calls; returns
        the samples' raw outputs at the parameters before the step.

        Every sample's gradient is taken at the same parameters and the steps are summed: with
        one sample this is River's step exactly; with a positive and its negatives it is
        mini-batch SGD over the samples of one event. ``events`` (the event of each sample)
        makes it a step for a micro-batch of events: a feature touched by n > ``shared_steps``
        events (the intercept: by all) takes ``shared_steps / n`` of their summed step, i.e.
        ``shared_steps`` times their mean step. Up to that many events it is their plain sum
        (as event-by-event SGD would move it, nearly); past it the step is bounded by
        ``shared_steps`` single steps. Summed without a bound, a context or tag seen by a
        thousand events of a batch takes a thousand steps from the same point and diverges;
        scaled by 1/sqrt(n) it still diverged on the synthetic benchmark stream (100k items,
        1,000-event batches); 1/n (the mean step) is stable but learns shared content
        features too slowly for cold start (``tests/e2e``, the new Film-Noir item).
        """
        with np.errstate(over="ignore", invalid="ignore"):
            raw, totals, xv, v, weights = self.forward(flat)
            g = self.loss.gradient(y_true=np.asarray(ys, float), y_pred=raw)
            g = np.clip(g, -self.clip_gradient, self.clip_gradient) * np.asarray(ws, float)
            t, x, per_entry = self.table, flat.xs, g[flat.sample]
            # d raw_s / d w_f = x_f;  d raw_s / d v_f = x_f (sum_s x v - x_f v_f)
            w_step = self.weight_optimizer.learning_rate * (per_entry * x)
            v_step = (per_entry * x)[:, None] * (totals[flat.sample] - xv)
            if self.l2_weight:
                w_step += self.weight_optimizer.learning_rate * self.l2_weight * weights
            if self.l2_latent:
                v_step += self.l2_latent * v
            g_intercept = float(g.sum())
            n_events = len(np.unique(events)) if events is not None else 1
            if events is not None and n_events > self.shared_steps:  # else no row is bounded
                share = flat.per_event_share(events, self.shared_steps)
                w_step *= share
                v_step *= share[:, None]
                g_intercept *= self.shared_steps / n_events
            v_step *= self.latent_optimizer.learning_rate
            np.subtract.at(t.weights, flat.rows, w_step)
            np.subtract.at(t.latents, flat.rows, v_step)
            t.learned[flat.rows] = True
            sgd = self.weight_optimizer
            self.intercept -= self.intercept_lr.get(sgd.n_iterations) * g_intercept
            sgd.n_iterations += 1
            self.latent_optimizer.n_iterations += 1
            self.finite = bool(np.isfinite(raw).all() and np.isfinite(v_step).all())
        return raw

    def forward(
        self, flat: Flat
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Raw outputs, per-sample ``sum x v``, per-entry ``x v``, and the gathered latents
        and weights."""
        t, x = self.table, flat.xs
        v, weights = t.latents[flat.rows], t.weights[flat.rows]
        xv = x[:, None] * v
        totals = np.add.reduceat(xv, flat.starts, axis=0)
        squares = np.add.reduceat(np.einsum("ij,ij->i", xv, xv), flat.starts)
        linear = np.add.reduceat(x * weights, flat.starts)
        raw = self.intercept + linear + 0.5 * (np.einsum("ij,ij->i", totals, totals) - squares)
        return raw, totals, xv, v, weights


class Flat:
    """Encoded samples laid end to end: rows, values, and which sample each entry is of.

    >>> f = Flat.of([(np.array([0, 1]), np.ones(2)), (np.array([0, 2, 3]), np.ones(3))])
    >>> f.starts.tolist(), f.sample.tolist()
    ([0, 2], [0, 0, 1, 1, 1])
    """

    __slots__ = ("rows", "sample", "starts", "xs")

    def __init__(self, rows: np.ndarray, xs: np.ndarray, lengths: Sequence[int]) -> None:
        if not all(lengths):
            raise ValueError("every sample needs at least one feature")
        self.rows, self.xs = rows, xs
        self.sample = np.repeat(np.arange(len(lengths)), lengths)
        self.starts = np.zeros(len(lengths), np.int64)
        np.cumsum(lengths[:-1], out=self.starts[1:])

    def per_event_share(self, events: np.ndarray, steps: float = 1.0) -> np.ndarray:
        """Per entry, ``min(1, steps / n)`` where n is the number of distinct events whose
        samples hold its row."""
        n_events = int(events.max()) + 1 if len(events) else 1
        pairs = np.unique(self.rows * n_events + events[self.sample])
        rows, counts = np.unique(pairs // n_events, return_counts=True)
        return np.minimum(1.0, steps / counts[np.searchsorted(rows, self.rows)])

    @classmethod
    def of(cls, parts: Sequence[Rows], per_sample: int = 1) -> Flat:
        """Samples made of ``per_sample`` consecutive parts each (e.g. user side, item side)."""
        lengths = [len(rows) for rows, _ in parts]
        if per_sample > 1:
            lengths = [sum(lengths[i : i + per_sample]) for i in range(0, len(lengths), per_sample)]
        rows = np.concatenate([rows for rows, _ in parts])
        xs = np.concatenate([x for _, x in parts])
        return cls(rows, xs, lengths)


class FastFMRegressor(_FastPairwise, facto.FMRegressor):
    """``river.facto.FMRegressor`` on a parameter table, with the fast learning step."""


class FastFMClassifier(_FastPairwise, facto.FMClassifier):
    """``river.facto.FMClassifier`` on a parameter table, with the fast learning step."""
