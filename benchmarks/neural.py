"""The neural strategy with and without its sampling-bias correction (logQ), in one pass each
over a log's first events, beside the strategies of the default mix: each source's HitRate
over its own candidates (the policy's estimate) and the fused list's.

    python -m benchmarks.neural ../shared/datasets/movielens-100k --limit 41682
    python -m benchmarks.neural /tmp/yoochoose.jsonl --limit 40000
"""

from __future__ import annotations

import argparse
import itertools
from pathlib import Path

from streamer.engine import Engine
from streamer.evaluation.prequential import metrics_report, watched
from streamer.evaluation.runner import decode
from streamer.replay import open_log
from streamer.settings import Settings
from streamer.strategies.neural import Neural

STRATEGIES = ("personal", "similar", "near", "recent", "popular", "fresh", "neural")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("log", type=Path)
    parser.add_argument("--limit", type=int, default=40_000)
    parser.add_argument("--batch", type=int, default=100)
    args = parser.parse_args()
    settings = Settings(strategies=STRATEGIES)
    events, _ = decode(itertools.islice(open_log(args.log), args.limit), settings)
    print(f"{args.log}: {len(events):,} events, micro-batches of {args.batch}")
    print("| neural | fused HitRate@10 | neural's own | personal's own | popular's own |")
    print("|---|---|---|---|---|")
    for correct in (False, True):
        engine = watched(Engine(settings))
        for strategy in engine.strategies:
            if isinstance(strategy, Neural):
                strategy.correct = correct
        for at in range(0, len(events), args.batch):
            engine.process(events[at : at + args.batch])
        report = metrics_report(engine)
        own = report["strategies"]["hit_rates"]
        print(
            f"| {'logQ' if correct else 'plain'} | {report['hit_rate']} | {own['neural']} | "
            f"{own['personal']} | {own['popular']} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
