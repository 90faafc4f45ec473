"""River's factorization machines on a parameter table, with a compiled SGD step.

The model, its loss, its optimizers and its initializers are River's own, and River's
``learn_one`` / ``predict_one`` work as before; the parameters live in a
:class:`~streamer.model.table.ParameterTable` (two numpy arrays, one row per feature). With
plain SGD at constant rates, learning is :func:`~streamer.model.sgd_kernel.sgd_events`: a
micro-batch of events in one compiled call, each event's step exactly River's. Predictions
for many samples (:meth:`forward`) use Rendle's identity ``sum_{i<j} <v_i, v_j> x_i x_j =
(||sum_i x_i v_i||^2 - sum_i x_i^2 ||v_i||^2) / 2`` on one ``(p, k)`` gather. Other
optimizers, schedules, losses, L1 and sample normalisation fall back to River's own step.

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

from streamer.model.sgd_kernel import LOG, SQUARED, Parts, sgd_events
from streamer.model.table import LatentView, ParameterTable, WeightView

#: A sample's features as rows of the table and their values.
Rows = tuple[np.ndarray, np.ndarray]
_NOTHING = Parts.of([(np.zeros(0, np.int64), np.zeros(0))])  # one empty part


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
    #: The max-norm bound of every weight and latent row (0: none, River's step exactly).
    max_norm: float = 0.0
    _clamped: np.ndarray

    @property
    def clamped(self) -> int:
        """How many times the max-norm bound held a weight or latent row back."""
        return int(self._clamped[0])

    def _init_latents(self) -> Any:  # River's hook types it as a defaultdict
        """River's hook: the weights and latents become views of one parameter table."""
        self.table = ParameterTable(
            self.n_factors, self.weight_initializer, self.latent_initializer
        )
        self._clamped = np.zeros(1, np.int64)
        self.weights = WeightView(self.table)
        return LatentView(self.table)

    @property
    def plain(self) -> bool:
        """Plain SGD at constant rates, no L1, a compiled loss: what the compiled step does."""
        constant = optim.schedulers.Constant
        return (
            type(self.latent_optimizer) is optim.SGD
            and type(self.weight_optimizer) is optim.SGD
            and all(
                type(s) is constant
                for s in (self.latent_optimizer.lr, self.weight_optimizer.lr, self.intercept_lr)
            )
            and type(self.loss) in (optim.losses.Squared, optim.losses.Log)
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
        self.learn_events(Parts.of([self.encode(x)]), _NOTHING, [0], [y], [w], [0, 1])

    # -- the fast path ---------------------------------------------------------------------

    def raw_flat(self, flat: Flat) -> np.ndarray:
        """The raw outputs of many encoded samples at once."""
        return self.forward(flat)[0]

    def learn_numeric(self, x: dict[str, float], y: Any, w: float = 1.0) -> None:
        """``learn_one`` for features that are already numbers (no one-hot pass)."""
        self.learn_many([x], [y], [w])

    def learn_many(self, xs: list[dict[str, float]], ys: list[Any], ws: list[float]) -> None:
        """One SGD step on several samples at once, every gradient taken at the same point."""
        if not self.plain:  # River's own path, sample normalisation included
            for x, y, w in zip(xs, ys, ws, strict=True):
                self.learn_one(x, y, w=w)  # type: ignore[attr-defined]
            return
        own = Parts.of([self.encode(x) for x in xs])
        self.learn_events(_NOTHING, own, range(len(xs)), ys, ws, [0, len(xs)])

    def learn_events(
        self,
        shared: Parts,
        own: Parts,
        sample_own: Sequence[int],
        ys: Sequence[Any],
        ws: Sequence[float],
        event_starts: Sequence[int],
    ) -> tuple[np.ndarray, np.ndarray]:
        """Learn events in order (plain SGD only; :func:`~streamer.model.sgd_kernel.sgd_events`).

        Event e's samples are ``event_starts[e]`` up to ``event_starts[e + 1]``, sample s
        made of part e of ``shared`` and part ``sample_own[s]`` of ``own``. An event is one
        step with its samples' gradients taken at the same parameters (a positive and its
        negatives); one sample alone is River's step exactly.

        Returns each sample's raw output before its event's step, and per event whether the
        step was finite (a step that is not is skipped; :meth:`reset` its rows).
        """
        if not self.plain:
            raise ValueError("learn_events needs plain SGD at constant rates (see `plain`)")
        raw = np.empty(len(ys))
        ok = np.empty(len(event_starts) - 1, bool)
        if not len(ok):
            return raw, ok
        loss = self.loss
        log = type(loss) is optim.losses.Log
        wopt, lopt = self.weight_optimizer, self.latent_optimizer
        self.intercept = sgd_events(
            self.table.weights,
            self.table.latents,
            self.table.learned,
            float(self.intercept),
            *shared,
            *own,
            np.asarray(sample_own, np.int64),
            np.asarray(event_starts, np.int64),
            np.asarray(ys, float),
            np.asarray(ws, float),
            float(wopt.learning_rate),
            float(lopt.learning_rate),
            float(self.intercept_lr.get(wopt.n_iterations)),
            float(self.l2_weight),
            float(self.l2_latent),
            float(self.clip_gradient),
            LOG if log else SQUARED,
            float(loss.weight_pos) if log else 1.0,
            float(loss.weight_neg) if log else 1.0,
            float(self.max_norm),
            raw,
            ok,
            self._clamped,
        )
        wopt.n_iterations += len(ok)
        lopt.n_iterations += len(ok)
        return raw, ok

    def reset(self, rows: np.ndarray) -> None:
        """Forget the parameters of ``rows`` (they re-initialise), and a non-finite intercept;
        after a step that was not finite."""
        self.table.reset(rows)
        if not np.isfinite(self.intercept):
            self.intercept = 0.0

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
    """Encoded samples laid end to end: rows, values, and where each sample starts.

    >>> f = Flat.of([(np.array([0, 1]), np.ones(2)), (np.array([0, 2, 3]), np.ones(3))])
    >>> f.starts.tolist()
    [0, 2]
    """

    __slots__ = ("rows", "starts", "xs")

    def __init__(self, rows: np.ndarray, xs: np.ndarray, lengths: Sequence[int]) -> None:
        if not all(lengths):
            raise ValueError("every sample needs at least one feature")
        self.rows, self.xs = rows, xs
        self.starts = np.zeros(len(lengths), np.int64)
        np.cumsum(lengths[:-1], out=self.starts[1:])

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
