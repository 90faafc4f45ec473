"""Whether a change kept what the engine publishes, to the last item: a digest of its lists.

    .venv/bin/python -m benchmarks.digest [--events 30000] [--batches 10 500] [--code DIR]

Replays the first ``--events`` events of a log (MovieLens-100K by default) through a new
``Engine`` with the default settings (``STREAMREC_*`` variables apply), once per batch size,
and prints per size the number of users' lists, a digest of those lists (users, items, scores
to 5 decimals, strategies, list ids, sources) and a digest of the prequential report. A change
meant to be exact (a faster booking, a refactor) prints the same digests as the code before
it: ``--code DIR`` runs another checkout's engine under this script (e.g. ``git worktree add
/tmp/before HEAD~1``), side by side. Batches of 10 and of 500 take different paths (the threads
beside the learning start at ``streamer.beside.BESIDE_MIN`` events).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from benchmarks.__main__ import DATASET


def digests(dataset: Path, events: int, batch: int) -> tuple[int, str, str]:
    """(lists, their digest, the report's digest) of ``events`` events in batches of
    ``batch``, with whichever ``streamer`` is importable."""
    from streamer.engine import Engine
    from streamer.evaluation.prequential import scoreboard, watched
    from streamer.evaluation.runner import decode
    from streamer.replay import open_log
    from streamer.settings import Settings

    settings = Settings.from_env()
    stream, _ = decode(open_log(dataset), settings)
    stream = stream[:events]
    engine = watched(Engine(settings))
    lists, digest = 0, hashlib.sha256()
    for start in range(0, len(stream), batch):
        for rec in engine.process(stream[start : start + batch]).lists:
            lists += 1
            items = [(item, round(score, 5)) for item, score in rec.items]
            digest.update(repr((rec.user, items, rec.strategies, rec.rec_id, rec.source)).encode())
    report = scoreboard(engine).report(len(engine.catalogue))
    report_digest = hashlib.sha256(json.dumps(report, sort_keys=True, default=str).encode())
    return lists, digest.hexdigest()[:16], report_digest.hexdigest()[:16]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--dataset", type=Path, default=DATASET)
    parser.add_argument("--events", type=int, default=30_000)
    parser.add_argument("--batches", type=int, nargs="+", default=[10, 500])
    parser.add_argument("--code", type=Path, default=None, help="another checkout's engine")
    args = parser.parse_args(argv)
    if args.code is not None:  # this script, with the other checkout's streamer on the path
        command = [sys.executable, str(Path(__file__).resolve()), "--events", str(args.events)]
        command += ["--dataset", str(args.dataset.resolve()), "--batches"]
        command += [str(b) for b in args.batches]
        env = {**os.environ, "PYTHONPATH": str(args.code.resolve())}
        return subprocess.run(command, env=env, cwd=args.code, check=False).returncode
    print(f"{args.dataset.name}, first {args.events:,} events")
    print("batch  lists  lists' digest      report's digest")
    for batch in args.batches:
        lists, of_lists, of_report = digests(args.dataset, args.events, batch)
        print(f"{batch:5d}  {lists:5d}  {of_lists}  {of_report}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
