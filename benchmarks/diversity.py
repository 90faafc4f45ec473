"""The diversity trade-off: HitRate against coverage, Gini and intra-list diversity as
``STREAMREC_DIVERSITY`` (MMR's lambda) moves, each value one prequential pass of the engine over
the same events (batches of 50), side by side.

    python -m benchmarks.diversity LOG [--limit N] [--lams 0,0.2,0.4,0.6]
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import time
from pathlib import Path

from streamer.engine import Engine
from streamer.evaluation.runner import decode
from streamer.replay import open_log
from streamer.settings import Settings

FIGURES = ("hit_rate", "ndcg", "coverage", "gini", "intra_list_diversity", "novelty_bits")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("log", type=Path)
    parser.add_argument("--limit", type=int, default=None)
    parser.add_argument("--lams", default="0,0.2,0.4,0.6")
    parser.add_argument("--batch-size", type=int, default=50)
    args = parser.parse_args()
    base = Settings.from_env()
    events, _ = decode(itertools.islice(open_log(args.log), args.limit), base)
    rows = []
    for lam in (float(x) for x in args.lams.split(",")):
        engine = Engine(dataclasses.replace(base, diversity=lam))
        started = time.process_time()
        for at in range(0, len(events), args.batch_size):
            engine.process(events[at : at + args.batch_size])
        report = engine.metrics_report()
        row: dict[str, float] = {"diversity": lam, **{k: float(report[k]) for k in FIGURES}}
        row["cpu_us_per_event"] = round(1e6 * (time.process_time() - started) / len(events))
        rows.append(row)
        print(json.dumps(row), flush=True)
    first = rows[0]
    print("\n| diversity | HitRate@10 | vs 0 | coverage | vs 0 | Gini | ILD | novelty | µs/event |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['diversity']} | {r['hit_rate']:.4f} | {r['hit_rate'] / first['hit_rate']:.3f} x"
            f" | {r['coverage']:.4f} | {r['coverage'] / first['coverage']:.2f} x | {r['gini']:.4f}"
            f" | {r['intra_list_diversity']:.4f} | {r['novelty_bits']:.3f}"
            f" | {r['cpu_us_per_event']} |"
        )


if __name__ == "__main__":
    main()
