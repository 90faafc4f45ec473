"""What a snapshot of the engine costs: its size, and the time to write and to load it.

    python -m benchmarks.snapshot [--dataset DIR] [--runs 3] [--clicks N]

The engine learns the whole MovieLens-100K log in process (batches of 500), or with
``--clicks N`` the first N events of the soak's synthetic stream (``benchmarks.soak_worker``:
a new user every three clicks, nothing expiring: N / 3 users kept), then writes and loads a
snapshot ``--runs`` times; the worker's stream waits for the write (see docs/reliability.md).
Each run writes and loads it twice, side by side (which goes first alternates): as the worker
does (the cyclic garbage collector paused meanwhile, :func:`streamer.memory.collector_paused`)
and with the collector left running, and prints the ratios.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import tempfile
import time
from pathlib import Path

from benchmarks.__main__ import DATASET
from benchmarks.soak_worker import stream as soak_stream
from streamer import snapshot
from streamer.engine import Engine
from streamer.evaluation.runner import decode
from streamer.replay import open_log
from streamer.settings import Settings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--dataset", type=Path, default=DATASET)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--clicks", type=int, default=0, help="the soak's stream instead")
    args = parser.parse_args()
    settings = Settings()
    log = soak_stream(0, args.clicks) if args.clicks else open_log(args.dataset)
    events, _ = decode(log, settings)
    engine = Engine(settings)
    for n in range(0, len(events), 500):
        engine.process(events[n : n + 500])
    directory = Path(tempfile.mkdtemp())
    paused = snapshot.collector_paused
    ways = [("", paused), ("collector_on_", contextlib.nullcontext)]
    for run in range(args.runs):
        figures: dict[str, float] = {"events": engine.events, "users": len(engine.users)}
        for name, pause in ways[:: 1 if run % 2 == 0 else -1]:  # alternating which goes first
            snapshot.collector_paused = pause  # type: ignore[assignment]
            gc.collect()  # each way from the same heap
            started = time.perf_counter()
            saved = snapshot.save(engine, {}, directory)
            figures[f"{name}write_s"] = round(time.perf_counter() - started, 2)
            started = time.perf_counter()
            loaded, _ = snapshot.load(saved.path, settings)
            gc.freeze()  # as the worker does with a restored state (its first batches' walks)
            figures[f"{name}load_s"] = round(time.perf_counter() - started, 2)
            del loaded
            gc.unfreeze()
        snapshot.collector_paused = paused
        figures["mb"] = round(saved.path.stat().st_size / 1e6, 1)
        for step in ("write", "load"):
            figures[f"{step}_vs_collector_on"] = round(
                figures[f"{step}_s"] / figures[f"collector_on_{step}_s"], 2
            )
        print(json.dumps(figures), flush=True)


if __name__ == "__main__":
    main()
