"""The re-rankers' trade-off: one prequential pass of the engine per value of a setting
(``diversity`` or ``calibration``), over the same events, HitRate against coverage, Gini,
intra-list diversity, novelty and miscalibration (``streamrec evaluate --curve``,
``benchmarks/diversity.py``)."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from streamer.diversity import miscalibration, tag_distribution
from streamer.engine import Engine, Event
from streamer.evaluation.prequential import metrics_report, watched
from streamer.settings import Settings

FIGURES = ("hit_rate", "ndcg", "coverage", "gini", "intra_list_diversity", "novelty_bits")
KNOBS = ("diversity", "calibration", "max_per_tag")


def mean_miscalibration(engine: Engine) -> float:
    """Mean over users of the miscalibration of their last list against the tag shares of
    their last items (the target a calibrated list follows)."""
    tags = engine.catalogue.tags
    total, users = 0.0, 0
    for user, shown in engine.shown.items():
        target = engine.recommender.tag_target(user)
        listed = tag_distribution([tags.get(i, ()) for i in shown])
        if target and listed:
            total += miscalibration(target, listed)
            users += 1
    return round(total / users, 4) if users else float("nan")


def tradeoff(
    events: Sequence[Event],
    settings: Settings,
    knob: str,
    values: Sequence[float],
    batch_size: int = 1,
    on_row: Callable[[dict[str, float]], None] | None = None,
    done: Mapping[float, Engine] | None = None,
) -> list[dict[str, float]]:
    """One row per value of ``knob``: the engine's prequential figures over ``events``; an
    engine in ``done`` (by value) has had its pass already (a run's own: its row is read from
    it, with no CPU figure)."""
    if knob not in KNOBS:
        raise ValueError(f"curve of {knob!r}: expected one of {KNOBS}")
    rows = []
    for value in values:
        engine = (done or {}).get(value)
        cpu: dict[str, float] = {}
        if engine is None:
            kind = type(getattr(settings, knob))  # the setting's own type (max_per_tag: int)
            changes: dict[str, Any] = {knob: kind(value)}
            engine = watched(Engine(dataclasses.replace(settings, **changes)))
            started = time.process_time()
            for at in range(0, len(events), batch_size):
                engine.process(events[at : at + batch_size])
            cpu["cpu_us_per_event"] = round(1e6 * (time.process_time() - started) / len(events))
        report = metrics_report(engine)
        row: dict[str, float] = {knob: value, **{k: float(report[k]) for k in FIGURES}}
        row["miscalibration"] = mean_miscalibration(engine)
        rows.append(row | cpu)
        if on_row is not None:
            on_row(rows[-1])
    return rows


def curve_table(rows: Sequence[dict[str, float]], knob: str) -> str:
    """The rows as markdown, HitRate and coverage also as ratios to the first row.

    >>> rows = [{"diversity": 0.0, "hit_rate": 0.2, "coverage": 0.5, "gini": 0.9,
    ...          "intra_list_diversity": 0.8, "novelty_bits": 2.0, "miscalibration": 0.9},
    ...         {"diversity": 0.4, "hit_rate": 0.19, "coverage": 0.6, "gini": 0.8,
    ...          "intra_list_diversity": 0.85, "novelty_bits": 2.1, "miscalibration": 0.8}]
    >>> print(curve_table(rows, "diversity").splitlines()[-1])
    | 0.4 | 0.1900 | 0.950 x | 0.6000 | 1.20 x | 0.8000 | 0.8500 | 2.100 | 0.8000 |
    """
    first = rows[0]
    lines = [
        f"| {knob} | HitRate@10 | vs first | coverage | vs first | Gini | ILD | novelty (bits) "
        "| miscalibration |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r[knob]} | {r['hit_rate']:.4f} | {r['hit_rate'] / first['hit_rate']:.3f} x"
            f" | {r['coverage']:.4f} | {r['coverage'] / first['coverage']:.2f} x"
            f" | {r['gini']:.4f} | {r['intra_list_diversity']:.4f} | {r['novelty_bits']:.3f}"
            f" | {r['miscalibration']:.4f} |"
        )
    return "\n".join(lines)
