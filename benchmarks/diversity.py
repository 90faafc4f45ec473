"""The re-rankers' trade-off: HitRate against coverage, Gini, intra-list diversity and
miscalibration as ``STREAMREC_DIVERSITY`` (MMR's lambda) or ``STREAMREC_CALIBRATION`` (Steck's)
moves, each value one prequential pass of the engine over the same events, side by side.

    python -m benchmarks.diversity LOG [--knob calibration] [--lams 0,0.2,0.4,0.6]

Miscalibration: over users, the KL divergence of their last list's tag shares (mixed with 1% of
the target) from the tag shares of their last 50 items.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import math
import time
from pathlib import Path
from typing import Any

from streamer.diversity import tag_distribution
from streamer.engine import Engine
from streamer.evaluation.runner import decode
from streamer.replay import open_log
from streamer.settings import Settings

FIGURES = ("hit_rate", "ndcg", "coverage", "gini", "intra_list_diversity", "novelty_bits")


def miscalibration(engine: Engine, alpha: float = 0.01) -> float:
    """Mean over users of KL(their last 50 items' tag shares || their last list's)."""
    tags = engine.catalogue.tags
    total, users = 0.0, 0
    for user, shown in engine.shown.items():
        target = tag_distribution([tags.get(i, ()) for i in engine.users.recent(user, 50)])
        listed = tag_distribution([tags.get(i, ()) for i in shown])
        if not target or not listed:
            continue
        total += sum(
            p * math.log(p / ((1 - alpha) * listed.get(tag, 0.0) + alpha * p))
            for tag, p in target.items()
        )
        users += 1
    return round(total / users, 4) if users else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("log", type=Path)
    parser.add_argument("--limit", type=int, default=None)
    parser.add_argument("--lams", default="0,0.2,0.4,0.6")
    parser.add_argument("--batch-size", type=int, default=1)
    parser.add_argument("--knob", choices=("diversity", "calibration"), default="diversity")
    args = parser.parse_args()
    base = Settings.from_env()
    events, _ = decode(itertools.islice(open_log(args.log), args.limit), base)
    rows = []
    for lam in (float(x) for x in args.lams.split(",")):
        changes: dict[str, Any] = {args.knob: lam}
        engine = Engine(dataclasses.replace(base, **changes))
        started = time.process_time()
        for at in range(0, len(events), args.batch_size):
            engine.process(events[at : at + args.batch_size])
        report = engine.metrics_report()
        row: dict[str, float] = {"lambda": lam, **{k: float(report[k]) for k in FIGURES}}
        row["miscalibration"] = miscalibration(engine)
        row["cpu_us_per_event"] = round(1e6 * (time.process_time() - started) / len(events))
        rows.append(row)
        print(json.dumps(row), flush=True)
    first = rows[0]
    print(f"\n| {args.knob} | HitRate@10 | vs 0 | coverage | vs 0 | Gini | ILD | novelty"
          " | miscalibration | µs/event |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['lambda']} | {r['hit_rate']:.4f} | {r['hit_rate'] / first['hit_rate']:.3f} x"
            f" | {r['coverage']:.4f} | {r['coverage'] / first['coverage']:.2f} x | {r['gini']:.4f}"
            f" | {r['intra_list_diversity']:.4f} | {r['novelty_bits']:.3f}"
            f" | {r['miscalibration']:.4f} | {r['cpu_us_per_event']} |"
        )


if __name__ == "__main__":
    main()
