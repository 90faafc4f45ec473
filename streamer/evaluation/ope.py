"""Off-policy evaluation on logged bandit feedback: what a policy would have earned, from a log
of another policy's choices and their propensities.

Each logged row is a slot shown (a position in the list), the action the logging policy put
there, with the probability it had of doing so (its propensity), and the reward (a click). A
target policy is given as the probability of each action at each row's slot,
``target[n, a]``. With ``w_n = target[n, a_n] / propensity_n``:

- IPS: ``mean(w r)`` (unbiased where the logging policy could take every action the target
  takes; its variance grows with the weights);
- self-normalised IPS: ``sum(w r) / sum(w)`` (biased, usually far less variance);
- doubly robust: ``mean(sum_a target[n, a] q(n, a) + w (r - q(n, a_n)))`` with a reward model
  ``q`` (:func:`reward_model`, cross-fitted: no row's own reward in its model).

Intervals are 95% normal intervals over rows (rows independent): the standard error of the
mean for IPS and DR, the delta method for the ratio. ``tests/unit/test_ope.py`` checks, on
simulated logs whose true value is exact, that they cover it about as often as they say; and
on the Open Bandit Dataset that the value of its Bernoulli Thompson sampling policy,
estimated from the uniform-random log, lands in the interval of that policy's own log.
"""

from __future__ import annotations

import csv
import io
import math
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

#: z for a two-sided 95% interval.
Z95 = 1.959964


@dataclass(frozen=True)
class Logged:
    """A log of bandit feedback: per row, the slot, the action, its propensity, the reward,
    and any context (integer codes, one column per feature)."""

    actions: np.ndarray
    slots: np.ndarray
    propensities: np.ndarray
    rewards: np.ndarray
    contexts: np.ndarray
    n_actions: int

    def __len__(self) -> int:
        return len(self.actions)

    def rows(self, keep: np.ndarray) -> Logged:
        """The rows where ``keep`` (a boolean mask or indices)."""
        return Logged(
            self.actions[keep],
            self.slots[keep],
            self.propensities[keep],
            self.rewards[keep],
            self.contexts[keep],
            self.n_actions,
        )


@dataclass(frozen=True)
class Estimate:
    """A value and its 95% interval.

    >>> Estimate(0.5, 0.4, 0.6).covers(0.45), Estimate(0.5, 0.4, 0.6).covers(0.7)
    (True, False)
    """

    value: float
    low: float
    high: float

    def covers(self, value: float) -> bool:
        return self.low <= value <= self.high

    def as_dict(self) -> dict[str, float]:
        return {"value": self.value, "low": self.low, "high": self.high}


def _mean(values: np.ndarray) -> Estimate:
    mean = float(values.mean())
    half = Z95 * float(values.std(ddof=1)) / math.sqrt(len(values)) if len(values) > 1 else 0.0
    return Estimate(mean, mean - half, mean + half)


def on_policy(log: Logged) -> Estimate:
    """The logging policy's own reward rate (the mean reward of its log).

    >>> on_policy(simulate(np.random.default_rng(0), 1000)[0]).value
    0.305
    """
    return _mean(log.rewards.astype(float))


def _weights(log: Logged, target: np.ndarray) -> np.ndarray:
    if target.shape != (len(log), log.n_actions):
        raise ValueError(f"target of shape {target.shape}: expected {(len(log), log.n_actions)}")
    if np.any(log.propensities <= 0):
        raise ValueError("a logged propensity of 0: the row could not have been logged")
    chosen = target[np.arange(len(log)), log.actions]
    return np.asarray(chosen / log.propensities, float)


def _none_rewarded(w: np.ndarray, scale: float) -> Estimate:
    """No row the target would have chosen was rewarded: the normal interval collapses to
    [0, 0]; the rule of three on the weights' effective number of rows bounds it instead
    (``3 / n_eff`` for the rate among them, times ``scale``)."""
    effective = float(w.sum() ** 2 / (w**2).sum()) if w.any() else 0.0
    high = min(3.0 / effective, 1.0) * scale if effective else scale
    return Estimate(0.0, 0.0, high)


def ips(log: Logged, target: np.ndarray) -> Estimate:
    """Inverse propensity scoring: ``mean(w r)``.

    >>> log, target_of, theta = simulate(np.random.default_rng(1), 5000)
    >>> found = ips(log, target_of(log.contexts))
    >>> found.covers(true_value(theta, target_of))
    True
    """
    w = _weights(log, target)
    if not np.any(w * log.rewards):
        return _none_rewarded(w, float(w.mean()))
    return _mean(w * log.rewards)


def snips(log: Logged, target: np.ndarray) -> Estimate:
    """Self-normalised IPS: ``sum(w r) / sum(w)``, its interval by the delta method."""
    w = _weights(log, target)
    r = np.asarray(log.rewards, float)
    if not np.any(w * r):
        return _none_rewarded(w, 1.0)
    value = float((w * r).sum() / w.sum())
    n = len(w)
    residual = w * (r - value)
    half = Z95 * math.sqrt(float((residual**2).sum()) / (n - 1) / n) / float(w.mean())
    return Estimate(value, value - half, value + half)


def dr(log: Logged, target: np.ndarray, model: np.ndarray) -> Estimate:
    """Doubly robust: the reward model's value of the target, corrected by the weighted
    residuals of the logged actions (``model[n, a]``: the modelled reward of ``a`` at row
    ``n``)."""
    w = _weights(log, target)
    rows = np.arange(len(log))
    direct = (target * model).sum(axis=1)
    return _mean(direct + w * (log.rewards - model[rows, log.actions]))


def reward_model(log: Logged, folds: int = 2, smoothing: float = 20.0, seed: int = 0) -> np.ndarray:
    """``q[n, a]``: the mean reward of action ``a`` at row ``n``'s slot, shrunk towards the
    slot's mean by ``smoothing`` pseudo-rows, each row's from the other folds' rows only
    (cross-fitting: a row's own reward is never in its model)."""
    rng = np.random.default_rng(seed)
    fold = rng.integers(folds, size=len(log))
    n_slots = int(log.slots.max()) + 1
    out = np.zeros((len(log), log.n_actions))
    for f in range(folds):
        train = fold != f
        slots, actions = log.slots[train], log.actions[train]
        rewards = np.asarray(log.rewards[train], float)
        shown = np.zeros((n_slots, log.n_actions))
        earned = np.zeros((n_slots, log.n_actions))
        np.add.at(shown, (slots, actions), 1.0)
        np.add.at(earned, (slots, actions), rewards)
        slot_mean = earned.sum(axis=1) / np.maximum(shown.sum(axis=1), 1.0)
        table = (earned + smoothing * slot_mean[:, None]) / (shown + smoothing)
        out[fold == f] = table[log.slots[fold == f]]
    return out


def estimates(log: Logged, target: np.ndarray) -> dict[str, Estimate]:
    """IPS, self-normalised IPS and doubly robust estimates of ``target``'s value."""
    return {
        "ips": ips(log, target),
        "snips": snips(log, target),
        "dr": dr(log, target, reward_model(log)),
    }


# -- policies ---------------------------------------------------------------------------------


def by_slot(table: np.ndarray, log: Logged) -> np.ndarray:
    """A context-free policy (``table[slot, a]``) as the target of each row of ``log``."""
    return np.asarray(table[log.slots], float)


def empirical_policy(log: Logged) -> np.ndarray:
    """``table[slot, a]``: how often the logging policy put ``a`` in each slot (a policy
    whose choice does not depend on the context, read off its own log)."""
    n_slots = int(log.slots.max()) + 1
    table = np.zeros((n_slots, log.n_actions))
    np.add.at(table, (log.slots, log.actions), 1.0)
    return table / table.sum(axis=1, keepdims=True)


def ranked_policy(rank: Callable[[np.ndarray], Sequence[int]], log: Logged) -> np.ndarray:
    """A deterministic policy that puts its ranking's ``s``-th action in slot ``s``;
    ``rank(context)`` gives the ranking of a row's context."""
    target = np.zeros((len(log), log.n_actions))
    cache: dict[bytes, Sequence[int]] = {}
    for n in range(len(log)):
        key = log.contexts[n].tobytes()
        ranking = cache.get(key)
        if ranking is None:
            ranking = cache[key] = rank(log.contexts[n])
        target[n, ranking[int(log.slots[n])]] = 1.0
    return target


# -- data -------------------------------------------------------------------------------------


def simulate(
    rng: np.random.Generator, n: int, n_actions: int = 10, n_contexts: int = 5
) -> tuple[Logged, Callable[[np.ndarray], np.ndarray], np.ndarray]:
    """A log with a known truth: contexts uniform over ``n_contexts``, click probabilities
    ``theta[x, a]`` fixed (seed 7), a logging policy blind to them (a softmax of noise) with
    its exact propensities. Returns the log, a function giving the per-context target policy
    (softmax(10 theta)) of rows, and ``theta``."""
    fixed = np.random.default_rng(7)
    theta = fixed.uniform(0.05, 0.5, (n_contexts, n_actions))
    logging = _softmax(fixed.normal(0.0, 0.7, theta.shape))  # blind to theta
    x = rng.integers(n_contexts, size=n)
    cumulative = np.cumsum(logging, axis=1)[x]
    actions = np.minimum((cumulative < rng.random(n)[:, None]).sum(axis=1), n_actions - 1)
    rewards = (rng.random(n) < theta[x, actions]).astype(float)
    log = Logged(
        actions, np.zeros(n, np.int64), logging[x, actions], rewards, x[:, None], n_actions
    )
    target = _softmax(10.0 * theta)
    return log, lambda contexts: target[contexts[:, 0]], theta


def true_value(theta: np.ndarray, target_of: Callable[[np.ndarray], np.ndarray]) -> float:
    """The exact value of the simulated target policy (contexts uniform)."""
    contexts = np.arange(len(theta))[:, None]
    return float((target_of(contexts) * theta).sum(axis=1).mean())


def _softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


#: The Open Bandit Dataset's small sample, inside PyPI's obp 0.4.1 wheel (Apache-2.0 package;
#: the data by ZOZO, CC BY 4.0): not redistributed here, read from where the user has it.
OBD_WHEEL = "obp-0.4.1-py3-none-any.whl"
OBD_POLICIES = ("random", "bts")


def read_obd(path: Path, policy: str, campaign: str = "all") -> Logged:
    """One policy's log of the Open Bandit Dataset sample, from obp's wheel or from a directory
    holding its ``obd/`` tree. Actions are item ids, slots positions - 1; the context is the
    four hashed user features, coded as integers."""
    rows = list(csv.DictReader(io.StringIO(_obd_text(path, policy, campaign))))
    if not rows:
        raise ValueError(f"{path}: no rows for {policy}/{campaign}")
    rows.sort(key=lambda r: r["timestamp"])
    codes: list[dict[str, int]] = [{} for _ in range(4)]
    contexts = np.array(
        [
            [codes[f].setdefault(r[f"user_feature_{f}"], len(codes[f])) for f in range(4)]
            for r in rows
        ]
    )
    actions = np.array([int(r["item_id"]) for r in rows])
    return Logged(
        actions,
        np.array([int(r["position"]) - 1 for r in rows]),
        np.array([float(r["propensity_score"]) for r in rows]),
        np.array([float(r["click"]) for r in rows]),
        contexts,
        int(actions.max()) + 1,
    )


def _obd_text(path: Path, policy: str, campaign: str) -> str:
    inside = f"obd/{policy}/{campaign}/{campaign}.csv"
    if path.is_dir():
        for candidate in (path / inside, path / "obp/dataset" / inside):
            if candidate.exists():
                return candidate.read_text()
        raise FileNotFoundError(f"{path}: no {inside}")
    with zipfile.ZipFile(path) as wheel:
        return wheel.read(f"obp/dataset/{inside}").decode()


def obd_report(path: Path) -> dict[str, Any]:
    """On the Open Bandit Dataset sample: each logged policy's own click rate; the Thompson
    sampling policy's rate estimated from the uniform-random log (the known-answer check: it
    must land in the interval of the Thompson log's own rate); and streamrec's popularity
    strategies, learned on the first half of the random log (by time) and estimated on the
    second half."""
    from streamer.strategies import Observation, Query
    from streamer.strategies.popular import PopularInContext

    logs = {policy: read_obd(path, policy) for policy in OBD_POLICIES}
    random_log, bts_log = logs["random"], logs["bts"]
    out: dict[str, Any] = {
        "rows": {p: len(log) for p, log in logs.items()},
        "logged": {p: on_policy(log).as_dict() for p, log in logs.items()},
    }
    bts_target = by_slot(empirical_policy(bts_log), random_log)
    found = {name: e.as_dict() for name, e in estimates(random_log, bts_target).items()}
    truth = on_policy(bts_log)
    out["bts_from_random"] = found | {
        "within_bts_interval": {
            name: truth.low <= e["value"] <= truth.high for name, e in found.items()
        }
    }
    half = len(random_log) // 2
    learn, test = (
        random_log.rows(np.arange(half)),
        random_log.rows(np.arange(half, len(random_log))),
    )
    n_slots = int(random_log.slots.max()) + 1
    for name, global_only in (("popular", True), ("popular in context", False)):
        strategy = PopularInContext(global_only=global_only)
        for n in np.flatnonzero(learn.rewards > 0):
            bucket = _bucket(learn.contexts[n])
            strategy.learn(Observation("", int(learn.actions[n]), bucket, []))

        def rank(context: np.ndarray, strategy: PopularInContext = strategy) -> list[int]:
            query = Query("", _bucket(context), [], exclude=set())
            top = [item for item, _ in strategy.candidates([query], n_slots)[0]]
            rest = [a for a in range(random_log.n_actions) if a not in top]  # ties: lowest id
            return (top + rest)[:n_slots]

        target = ranked_policy(rank, test)
        out[f"streamrec {name}"] = {k: e.as_dict() for k, e in estimates(test, target).items()}
    out["random, second half"] = on_policy(test).as_dict()
    return out


def _bucket(context: np.ndarray) -> str:
    return f"user_feature_0={int(context[0])}"


def obd_table(report: dict[str, Any]) -> str:
    """The report as markdown."""
    lines = ["| policy | estimate | click rate | 95% interval |", "|---|---|---|---|"]

    def row(policy: str, how: str, e: dict[str, float]) -> None:
        lines.append(f"| {policy} | {how} | {e['value']:.5f} | [{e['low']:.5f}, {e['high']:.5f}] |")

    for policy, e in report["logged"].items():
        row(policy, f"its own log ({report['rows'][policy]:,} rows)", e)
    for name in ("ips", "snips", "dr"):
        row("bts", f"{name.upper()} from the random log", report["bts_from_random"][name])
    row("random", "its own log, second half", report["random, second half"])
    for policy in ("streamrec popular", "streamrec popular in context"):
        for name in ("ips", "snips", "dr"):
            row(policy, f"{name.upper()}, random log's second half", report[policy][name])
    return "\n".join(lines)
