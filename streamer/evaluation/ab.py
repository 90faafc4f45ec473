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
from collections.abc import Iterable, Mapping
from dataclasses import replace
from typing import Any

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


class ArmFigures:
    """One arm's prequential figures over its own users (an ``EngineObserver``), summed per
    user: users are what is randomised, so the intervals are over users (a ratio estimator's
    delta-method interval), not over their correlated events.

    >>> f = ArmFigures("a", lambda user: "a")
    >>> f.positive("u", 7, (3, 7)); f.positive("u", 9, (3, 7)); f.rating("u", 3.0, 4.0)
    >>> r = f.report(); r["hit_rate"], r["positives"], r["rmse"]
    (0.5, 2, 1.0)
    """

    def __init__(self, arm: str, assign: Any, k: int = 10) -> None:
        self.arm, self.assign, self.k = arm, assign, k
        # per user: positives, hits, NDCG sum, ratings, squared error sum
        self.per_user: dict[str, list[float]] = {}

    def _mine(self, user: str) -> list[float] | None:
        if self.assign(user) != self.arm:
            return None
        return self.per_user.setdefault(user, [0.0, 0.0, 0.0, 0.0, 0.0])

    def positive(self, user: str, item: int, shown: tuple[int, ...]) -> None:
        sums = self._mine(user)
        if sums is None:
            return
        top = shown[: self.k]
        rank = top.index(item) + 1 if item in top else 0
        sums[0] += 1
        sums[1] += rank > 0
        sums[2] += 1.0 / math.log2(rank + 1) if rank else 0.0

    def rating(self, user: str, predicted: float, actual: float) -> None:
        sums = self._mine(user)
        if sums is not None:
            sums[3] += 1
            sums[4] += (predicted - actual) ** 2

    def report(self) -> dict[str, Any]:
        rows = list(self.per_user.values())
        positives = [r[0] for r in rows]
        ratings = [r[3] for r in rows]
        out: dict[str, Any] = {
            "users": len(rows),
            "positives": int(sum(positives)),
            "ratings": int(sum(ratings)),
        }
        if sum(positives):
            for name, column in (("hit_rate", 1), ("ndcg", 2)):
                out[name], out[f"{name}_ci95"] = ratio_ci([r[column] for r in rows], positives)
        if sum(ratings):
            mse, (low, high) = ratio_ci([r[4] for r in rows], ratings)
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
    m = len(numerators)
    total_num, total_den = sum(numerators), sum(denominators)
    ratio = total_num / total_den
    if m < 2:
        return ratio, (ratio, ratio)
    mean_den = total_den / m
    residual = sum((a - ratio * b) ** 2 for a, b in zip(numerators, denominators, strict=True))
    half = z * math.sqrt(residual / (m - 1) / m) / mean_den
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

    def assign(user: str) -> str:
        return arm_of(user, share_b)

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
        "difference_b_minus_a": _differences(reports),
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


def _differences(reports: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
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
