"""Side by side, for comparing two versions of the code on a noisy machine.

    python -m benchmarks.pair [--runs 2] [--rate 2300 --preload 101682] [--code DIR] [--set S]

Each run starts Faust's empty agents, then the worker, on one local stack, each over the same
pre-produced MovieLens events, and prints their events/s, their CPU per event (all threads of
the process, from its first to its last batch: :class:`benchmarks.stream.Window`) and the
ratio. ``--rate`` then measures the worker's freshness at that fixed rate after ``--preload``
events. ``--code DIR`` runs another checkout's worker and empty agents under this harness,
e.g. the code before a change::

    git worktree add /tmp/before HEAD~1
    python -m benchmarks.pair --code /tmp/before; python -m benchmarks.pair   # and again
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path
from typing import Any

from benchmarks import stream
from benchmarks.__main__ import DATASET
from streamer.replay import open_log
from streamer.replay.producer import replay
from streamer.settings import Settings
from streamer.stack import create_topics


def consume(base: Settings, module: str, records: list[Any], code: Path | None) -> dict[str, Any]:
    """Events/s and CPU µs per event of ``module`` over pre-produced ``records``."""
    log = Path(base.state_dir) / "pair.log"
    process, window = stream.run_consumer(stream.fresh(base), module, records, log, code)
    figures = process.figures()  # the worker's (the empty agents publish none)
    process.stop()
    out = {
        "events_per_s": round(window.events_per_s),
        "cpu_us_per_event": round(window.cpu_us_per_event),
    }
    if figures.get("events"):  # fewer lists per event: larger batches (users repeat in them)
        out["lists_per_event"] = round(figures.get("lists_published", 0) / figures["events"], 3)
    return out


def fixed_rate(
    base: Settings, records: list[Any], rate: float, preload: int, code: Path | None
) -> dict[str, Any]:
    """The worker's freshness at ``rate`` events/s, after ``preload`` events."""
    settings = stream.fresh(base)
    create_topics(settings.broker, settings.topics, settings.partitions)
    replay(records[:preload], settings, progress=False)
    process = stream.Process(settings, "streamer.cli", Path(base.state_dir) / "pair.log", code)
    try:
        process.wait_events(preload)
        ratings = [r for r in records if r.kind == "clicks"]
        return stream.freshness_at(process, ratings[: int(8 * rate)], rate)
    finally:
        process.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--dataset", type=Path, default=DATASET)
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--rate", type=float, default=0.0, help="also freshness at this rate")
    parser.add_argument("--preload", type=int, default=101_682)
    parser.add_argument("--code", type=Path, help="another checkout's streamer to run")
    parser.add_argument("--set", default="", help="settings of both runs, e.g. web_enabled=0")
    args = parser.parse_args()
    records = list(open_log(args.dataset))
    with stream.local_stack() as stack:
        base = dataclasses.replace(stack, **Settings.changes(args.set, "--set"))
        for _ in range(args.runs):
            empty = consume(base, "benchmarks.trivial_app", records, args.code)
            worker = consume(base, "streamer.cli", records, args.code)
            out = {"code": str(args.code or "."), "set": args.set}
            out |= {"empty_agents": empty, "worker": worker}
            out["ratio"] = round(worker["events_per_s"] / empty["events_per_s"], 3)
            if args.rate:
                out["fixed_rate"] = fixed_rate(base, records, args.rate, args.preload, args.code)
            print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
