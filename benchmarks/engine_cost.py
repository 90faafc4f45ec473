"""CPU per event of the engine alone (no Kafka, no Redis), by micro-batch size.

    .venv/bin/python -m benchmarks.engine_cost [--events 30000] [--warm 20000] [--profile 10]

Replays the first ``--warm`` events of a log (MovieLens-100K by default) through
``Engine.process`` in batches of 50, then times the next ``--events`` in batches of each
size (a fresh copy of the warmed engine per size): process CPU microseconds per event and
lists per event. What the worker's CPU goes to beside Faust's: run it on two checkouts
(``git worktree add``) back to back to compare. ``--profile N`` prints cProfile's top
functions for batches of N.
"""

from __future__ import annotations

import argparse
import copy
import cProfile
import io
import os
import pstats
import time
from collections.abc import Sequence
from pathlib import Path

from benchmarks.__main__ import DATASET
from streamer.engine import Engine, Event
from streamer.evaluation.runner import decode
from streamer.replay import open_log
from streamer.settings import Settings


def run(engine: Engine, events: Sequence[Event], batch: int) -> tuple[float, float]:
    """CPU microseconds per event and lists per event over ``events`` in batches of ``batch``."""
    lists = 0
    start = time.process_time()
    for n in range(0, len(events), batch):
        lists += len(engine.process(events[n : n + batch]).lists)
    cpu = time.process_time() - start
    return 1e6 * cpu / len(events), lists / len(events)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--dataset", type=Path, default=DATASET)
    parser.add_argument("--warm", type=int, default=20_000)
    parser.add_argument("--events", type=int, default=30_000)
    parser.add_argument("--batches", type=int, nargs="+", default=[10, 50, 200])
    parser.add_argument("--profile", type=int, default=0, help="cProfile batches of this size")
    args = parser.parse_args()
    settings = Settings.from_env()  # STREAMREC_* variables: ablate a setting
    events, _ = decode(open_log(args.dataset), settings)
    warm, timed = events[: args.warm], events[args.warm : args.warm + args.events]
    engine = Engine(settings)
    run(engine, warm, 50)
    print(f"{args.dataset.name}: warmed on {len(warm):,} events, timing {len(timed):,}")
    print("batch  CPU µs/event  lists/event")
    for batch in args.batches:
        us, per = run(copy.deepcopy(engine), timed, batch)
        print(f"{batch:5d}  {us:12.0f}  {per:11.3f}")
    if args.profile:
        profiler = cProfile.Profile()
        fresh = copy.deepcopy(engine)
        profiler.enable()
        run(fresh, timed, args.profile)
        profiler.disable()
        out = io.StringIO()
        pstats.Stats(profiler, stream=out).sort_stats(
            os.environ.get("SORT", "cumulative")
        ).print_stats(45)
        print(out.getvalue())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
