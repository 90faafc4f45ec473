"""``streamrec evaluate --ab``: two configurations side by side on one log, users split between
them by a stable hash, each arm's figures over its own users, with confidence intervals.

Both arms' engines learn every event (offline, an arm's lists do not change what users do), in
the same pass, prequentially; a user's positives and ratings count for the arm the user is
assigned to, as they would on live traffic split the same way.
"""

from __future__ import annotations

import hashlib
import math
import time
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from dataclasses import replace
from typing import Any

import numpy as np

from streamer.engine import Engine
from streamer.evaluation.runner import decode
from streamer.replay.record import LogRecord
from streamer.settings import Settings

#: z for a two-sided 95% interval.
Z95 = 1.959964


def arm_of(user: str, share_b: float, salt: str = "streamrec-ab") -> str:
    """``"b"`` for a stable ``share_b`` of users, else ``"a"`` (the same user, the same arm,
    in every run and every worker).

    >>> arm_of("42", 0.5) == arm_of("42", 0.5)
    True
    >>> sum(arm_of(str(u), 0.3) == "b" for u in range(10_000)) / 10_000
    0.3009
    """
    digest = hashlib.sha256(f"{salt}:{user}".encode()).digest()
    return "b" if int.from_bytes(digest[:8], "big") / 2**64 < share_b else "a"


class Split:
    """:func:`arm_of` as an object (a snapshot can hold it; a closure it cannot).

    >>> Split(0.0)("42"), Split(1.0)("42")
    ('a', 'b')
    """

    def __init__(self, share_b: float, salt: str = "streamrec-ab") -> None:
        if not 0.0 <= share_b <= 1.0:
            raise ValueError(f"share of arm b {share_b}: expected 0 to 1")
        self.share_b, self.salt = share_b, salt

    def __call__(self, user: str) -> str:
        return arm_of(user, self.share_b, self.salt)


class ArmFigures:
    """One arm's prequential figures over its own users (an ``EngineObserver``), summed per
    user: users are what is randomised, so the intervals are over users (a ratio estimator's
    delta-method interval), not over their correlated events.

    The intervals need only the sums over users of each user's figures and of their products,
    kept as the figures move; so a live worker keeps the per-user figures of its last
    ``max_users`` users only (one who comes back after that counts as a new user).

    >>> f = ArmFigures("a", lambda user: "a")
    >>> f.positive("u", 7, (3, 7)); f.positive("u", 9, (3, 7)); f.rating("u", 3.0, 4.0)
    >>> r = f.report(); r["hit_rate"], r["positives"], r["rmse"]
    (0.5, 2, 1.0)
    """

    COLUMNS = 5  # per user: positives, hits, NDCG sum, ratings, squared error sum

    def __init__(self, arm: str, assign: Any, k: int = 10, max_users: int | None = None) -> None:
        self.arm, self.assign, self.k, self.max_users = arm, assign, k, max_users
        self.per_user: OrderedDict[str, np.ndarray] = OrderedDict()
        self.users = 0
        self.sums = np.zeros(self.COLUMNS)  # over users, of each column
        self.products = np.zeros((self.COLUMNS, self.COLUMNS))  # over users, column x column

    def _add(self, user: str, change: np.ndarray) -> None:
        if self.assign(user) != self.arm:
            return
        old = self.per_user.get(user)
        if old is None:
            old = self.per_user[user] = np.zeros(self.COLUMNS)
            self.users += 1
            if self.max_users is not None and len(self.per_user) > self.max_users:
                self.per_user.popitem(last=False)  # its share of the sums stays
        else:
            self.per_user.move_to_end(user)
        new = old + change
        self.sums += change
        self.products += np.outer(new, new) - np.outer(old, old)
        old[:] = new

    def positive(self, user: str, item: int, shown: tuple[int, ...]) -> None:
        top = shown[: self.k]
        rank = top.index(item) + 1 if item in top else 0
        gain = 1.0 / math.log2(rank + 1) if rank else 0.0
        self._add(user, np.array([1.0, float(rank > 0), gain, 0.0, 0.0]))

    def rating(self, user: str, predicted: float, actual: float) -> None:
        self._add(user, np.array([0.0, 0.0, 0.0, 1.0, (predicted - actual) ** 2]))

    def renumber(self, mapping: np.ndarray) -> None:
        """Nothing kept by item id."""

    def ratio(self, numerator: int, denominator: int) -> tuple[float, tuple[float, float]]:
        """``sum(numerator) / sum(denominator)`` over the arm's users, with its interval."""
        return _ratio_ci(
            self.users,
            self.sums[numerator],
            self.sums[denominator],
            self.products[numerator, numerator],
            self.products[numerator, denominator],
            self.products[denominator, denominator],
        )

    def report(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "users": self.users,
            "positives": int(self.sums[0]),
            "ratings": int(self.sums[3]),
        }
        if self.sums[0]:
            for name, column in (("hit_rate", 1), ("ndcg", 2)):
                out[name], out[f"{name}_ci95"] = self.ratio(column, 0)
        if self.sums[3]:
            mse, (low, high) = self.ratio(4, 3)
            out["rmse"] = math.sqrt(mse)
            out["rmse_ci95"] = (math.sqrt(max(low, 0.0)), math.sqrt(high))
        return out


def ratio_ci(
    numerators: list[float], denominators: list[float], z: float = Z95
) -> tuple[float, tuple[float, float]]:
    """``sum(num) / sum(den)`` over users and its 95% interval by the delta method (users
    independent, their events not).

    >>> value, (low, high) = ratio_ci([1, 0, 1, 1], [2, 2, 2, 2])
    >>> value, round(low, 3), round(high, 3)
    (0.375, 0.13, 0.62)
    """
    a, b = np.asarray(numerators, float), np.asarray(denominators, float)
    return _ratio_ci(len(a), a.sum(), b.sum(), a @ a, a @ b, b @ b, z)


def _ratio_ci(
    m: int, sa: float, sb: float, saa: float, sab: float, sbb: float, z: float = Z95
) -> tuple[float, tuple[float, float]]:
    """:func:`ratio_ci` from the sums over ``m`` users: of ``a``, ``b``, ``a a``, ``a b``,
    ``b b``."""
    ratio = float(sa / sb)
    if m < 2:
        return ratio, (ratio, ratio)
    residual = max(float(saa - 2 * ratio * sab + ratio * ratio * sbb), 0.0)
    half = z * math.sqrt(residual / (m - 1) / m) / float(sb / m)
    return ratio, (ratio - half, ratio + half)


def run_ab(
    records: Iterable[LogRecord],
    settings: Settings,
    changes: Mapping[str, Any],
    share_b: float = 0.5,
    batch_size: int = 1,
) -> dict[str, Any]:
    """Arm ``a``: ``settings``; arm ``b``: ``settings`` with ``changes``; JSON-ready figures."""
    started = time.monotonic()
    events, invalid = decode(records, settings)
    arms = {"a": settings, "b": replace(settings, **changes)}

    assign = Split(share_b)
    engines, figures, everyone = {}, {}, {}
    for arm, arm_settings in arms.items():
        engines[arm] = Engine(arm_settings)
        figures[arm] = ArmFigures(arm, assign, arm_settings.eval_k)
        # offline, each arm's lists exist for every user: the paired comparison below
        everyone[arm] = ArmFigures(arm, lambda user, arm=arm: arm, arm_settings.eval_k)
        engines[arm].observers += [figures[arm], everyone[arm]]
    for n in range(0, len(events), batch_size):
        for engine in engines.values():
            engine.process(events[n : n + batch_size])
    reports = {arm: figures[arm].report() for arm in arms}
    return {
        "events": len(events),
        "invalid": invalid,
        "share_b": share_b,
        "changes": dict(changes),
        "seconds": round(time.monotonic() - started, 1),
        "arms": reports,
        "difference_b_minus_a": differences(reports),
        "paired_b_minus_a": paired(everyone["a"], everyone["b"]),
    }


def paired(a: ArmFigures, b: ArmFigures) -> dict[str, Any]:
    """b - a on every user's own events (both arms' lists exist for everyone offline): per
    metric, the difference and its 95% interval over users. Far tighter than the split's, as
    each user is compared with themselves; a live split cannot do this.

    >>> a, b = ArmFigures("a", lambda u: "a"), ArmFigures("b", lambda u: "b")
    >>> for user in "uvw":
    ...     a.positive(user, 1, (2,)); b.positive(user, 1, (1,))
    >>> paired(a, b)["hit_rate"]["difference"]
    1.0
    """
    users = sorted(set(a.per_user) & set(b.per_user))
    out: dict[str, Any] = {"users": len(users)}
    for name, column, count in (("hit_rate", 1, 0), ("ndcg", 2, 0), ("mse", 4, 3)):
        counts = [a.per_user[u][count] for u in users]
        if not sum(counts):
            continue
        deltas = [b.per_user[u][column] - a.per_user[u][column] for u in users]
        diff, ci = ratio_ci(deltas, counts)
        out[name] = {"difference": diff, "ci95": ci}
    return out


def differences(reports: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """b - a per metric, with a 95% interval (the two arms' users are disjoint: independent)."""
    out: dict[str, Any] = {}
    a, b = reports["a"], reports["b"]
    for metric in ("hit_rate", "ndcg", "rmse"):
        if metric not in a or metric not in b:
            continue
        diff = b[metric] - a[metric]
        half_a = (a[f"{metric}_ci95"][1] - a[f"{metric}_ci95"][0]) / 2
        half_b = (b[f"{metric}_ci95"][1] - b[f"{metric}_ci95"][0]) / 2
        half = math.hypot(half_a, half_b)
        out[metric] = {"difference": diff, "ci95": (diff - half, diff + half)}
    return out


def ab_table(result: Mapping[str, Any]) -> str:
    """The per-arm figures as a markdown table."""
    lines = [
        f"A/B on {result['events']:,} events, arm b = {result['changes']} for "
        f"{result['share_b']:.0%} of users (a stable hash):",
        "",
        "| arm | users | positives | HitRate@10 [95% CI] | NDCG@10 [95% CI] | RMSE [95% CI] |",
        "|---|---|---|---|---|---|",
    ]
    for arm, r in result["arms"].items():
        cells = [
            f"{r[m]:.4f} [{r[m + '_ci95'][0]:.4f}, {r[m + '_ci95'][1]:.4f}]" if m in r else "-"
            for m in ("hit_rate", "ndcg", "rmse")
        ]
        lines.append(f"| {arm} | {r['users']} | {r['positives']} | " + " | ".join(cells) + " |")
    lines.append("")
    for metric, d in result["difference_b_minus_a"].items():
        low, high = d["ci95"]
        lines.append(f"- b - a, {metric}: {d['difference']:+.4f} [{low:+.4f}, {high:+.4f}]")
    pairs = result["paired_b_minus_a"]
    lines += ["", f"Paired, every user under both arms ({pairs['users']} users):", ""]
    for metric in ("hit_rate", "ndcg", "mse"):
        if metric in pairs:
            d = pairs[metric]
            low, high = d["ci95"]
            lines.append(f"- b - a, {metric}: {d['difference']:+.4f} [{low:+.4f}, {high:+.4f}]")
    return "\n".join(lines)
