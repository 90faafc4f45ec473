"""What a snapshot of the engine costs: its size, and the time to write and to load it.

    python -m benchmarks.snapshot [--dataset DIR] [--runs 3]

The engine learns the whole MovieLens-100K log in process (batches of 500), then writes and
loads a snapshot ``--runs`` times; the worker's stream waits for the write (see
docs/reliability.md).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from benchmarks.__main__ import DATASET
from streamer import snapshot
from streamer.engine import Engine
from streamer.evaluation.runner import decode
from streamer.replay import open_log
from streamer.settings import Settings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--dataset", type=Path, default=DATASET)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    settings = Settings()
    events, _ = decode(open_log(args.dataset), settings)
    engine = Engine(settings)
    for n in range(0, len(events), 500):
        engine.process(events[n : n + 500])
    directory = Path(tempfile.mkdtemp())
    for _ in range(args.runs):
        started = time.perf_counter()
        saved = snapshot.save(engine, {}, directory)
        written = time.perf_counter() - started
        started = time.perf_counter()
        snapshot.load(saved.path, settings)
        loaded = time.perf_counter() - started
        figures = {
            "events": engine.events,
            "users": len(engine.users),
            "mb": round(saved.path.stat().st_size / 1e6, 1),
            "write_s": round(written, 2),
            "load_s": round(loaded, 2),
        }
        print(json.dumps(figures), flush=True)


if __name__ == "__main__":
    main()
