"""Profile the real worker with py-spy on the local stack, over pre-produced MovieLens events.

    .venv/bin/python -m benchmarks.profile --seconds 40 [--code DIR]

Starts Tansu + Redis on free loopback ports, produces the dataset into fresh topics, runs
``streamrec worker`` under ``py-spy record`` (raw collapsed stacks) and prints the functions
holding the most samples, by their own time and inclusive of callees, and where the worker's
time per event goes: our agents' batches (``Pipeline.handle``, the engine within it), the rest
of the event loop (Faust), the engine's learning beside it (``streamer.beside``), the other
threads (the consumer's). ``--code DIR`` profiles another checkout's worker (e.g. ``git
worktree add /tmp/before REV``) under this harness. ``--gil`` keeps only the samples of a thread
holding the GIL (what bounds the worker: its main thread's time holding it, docs/benchmarks.md,
session 20); ``--trivial`` profiles Faust's empty agents (``benchmarks.trivial_app``) instead.
"""

from __future__ import annotations

import argparse
import collections
import os
import re
import subprocess
import sys
from pathlib import Path

from benchmarks import stream
from benchmarks.__main__ import DATASET
from streamer.replay import open_log
from streamer.replay.producer import replay
from streamer.stack import create_topics

ROOT = Path(__file__).resolve().parents[1]
_PREFIXES = re.compile(rf"\([^()]*?(?:site-packages/|python3\.\d+/|{re.escape(str(ROOT))}/)")


def record(
    dataset: Path,
    seconds: int,
    out: Path,
    code: Path | None = None,
    gil: bool = False,
    module: str = "streamer.cli",
) -> int:
    """Collapsed py-spy stacks of a worker (``code``'s, else this checkout's) consuming
    ``dataset``, written to ``out`` (only the samples of a thread holding the GIL if ``gil``);
    returns the number of events produced."""
    events = list(open_log(dataset))
    with stream.local_stack() as base:
        settings = stream.fresh(base)
        create_topics(settings.broker, settings.topics, settings.partitions)
        replay(events, settings, progress=False)
        spy = Path(sys.executable).with_name("py-spy")
        command = [str(spy), "record", "-r", "200", "-d", str(seconds), "-f", "raw"]
        command += ["--subprocesses"]  # the engine's own process (STREAMREC_ENGINE_PROCESS)
        command += ["--gil"] if gil else []
        command += ["-o", str(out), "--", sys.executable, "-m", module]
        command += ["worker"] if module == "streamer.cli" else []
        log = (Path(base.state_dir) / "worker.log").open("wb")
        path = {"PYTHONPATH": str(code)} if code else {}  # run from there: -m reads the cwd first
        env = {**os.environ, **settings.as_env(), **path}
        subprocess.run(command, env=env, stdout=log, cwd=code, check=True)
    return len(events)


#: Where a sample of the worker's main thread is, by the first of these in its stack.
PARTS = {"Engine.process": "engine", "Pipeline.handle": "our batches, beside the engine"}


def split(path: Path, events: int, rate: int = 200) -> str:
    """µs per event of the worker's parts (samples at ``rate`` Hz, over ``events``), idle
    waits in ``select`` and the start-up's imports left out."""
    parts: collections.Counter[str] = collections.Counter()
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if "Beside._run" in stack:
            part = "learning beside (streamer.beside's threads)"
        elif "Connection._recv" in stack:  # the engine's process, waiting for a call
            continue
        elif "spawn_main" in stack:  # the engine's process (streamer.hosts), its main thread
            part = "engine" if "Engine.process" in stack else "the engine's process, the rest"
        elif "_run_module_as_main" not in stack:  # not the main thread
            part = "other threads (the consumer's)"
        elif "EpollSelector.select" in stack or "_find_and_load" in stack:
            continue
        else:
            part = next((v for k, v in PARTS.items() if k in stack), "event loop, the rest")
        parts[part] += int(count)
    scale = 1e6 / rate / events
    return "\n".join(f"{n * scale:7.1f} µs/event  {part}" for part, n in parts.most_common())


def summarize(path: Path, top: int = 25) -> str:
    """The ``top`` functions by own samples and by inclusive samples, as percentages."""
    own: collections.Counter[str] = collections.Counter()
    inclusive: collections.Counter[str] = collections.Counter()
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        n = int(count)
        total += n
        frames = [re.sub(r":\d+\)", ")", _PREFIXES.sub("(", f)) for f in stack.split(";")]
        own[frames[-1]] += n
        for frame in set(frames):
            inclusive[frame] += n
    lines = [f"{total} samples", "", "own time:"]
    lines += [f"{c / total:6.1%}  {f}" for f, c in own.most_common(top)]
    lines += ["", "inclusive:"]
    lines += [f"{c / total:6.1%}  {f}" for f, c in inclusive.most_common(top)]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--dataset", type=Path, default=DATASET)
    parser.add_argument("--seconds", type=int, default=40)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/worker.pyspy"))
    parser.add_argument("--code", type=Path, default=None, help="another checkout's worker")
    parser.add_argument(
        "--gil", action="store_true", help="only samples holding the GIL (its share per part)"
    )
    parser.add_argument(
        "--trivial", action="store_true", help="Faust's empty agents (benchmarks.trivial_app)"
    )
    args = parser.parse_args()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    module = "benchmarks.trivial_app" if args.trivial else "streamer.cli"
    events = record(args.dataset, args.seconds, args.out.resolve(), args.code, args.gil, module)
    print(summarize(args.out))
    print()
    print(split(args.out, events))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
