"""N workers sharing one model (``streamer.sync``), in one process, against one worker on the
same events: the prequential HitRate@10 and RMSE of the lists and predictions users got.

    python -m benchmarks.workers ../shared/datasets/movielens-100k
    python -m benchmarks.workers /tmp/yoochoose.jsonl --workers 1,2,4 --sync-events 1000

Clicks and contexts go to the worker owning their user's partition (the producer's own
partitioner over ``--partitions``, partitions dealt round-robin to the workers); item events
go to every worker (``STREAMREC_ITEMS_EVERYWHERE``). The stream advances in ticks of
``--batch`` events, each worker taking its share of a tick as one micro-batch; every
``--sync-events`` events of the stream (1 s at 1,000 events/s by default), each worker's
delta is encoded, decoded and applied by the others. "no sync" is N workers that never
share; ``--unscaled`` sends every change whole (see ``streamer.sync.DENSE``). Also: bytes
synced per event, the time to collect and apply, and how far apart the
workers' shared item rows end (after a last sync).
"""

from __future__ import annotations

import argparse
import math
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
from kafka.partitioner.default import murmur2

from streamer import sync
from streamer.engine import Engine, Event
from streamer.evaluation.prequential import scoreboard, watched
from streamer.evaluation.runner import decode
from streamer.events import ItemEvent
from streamer.replay import open_log
from streamer.settings import Settings
from streamer.sync import Delta, Sync


def owner(user: str, partitions: int, workers: int) -> int:
    """The worker of ``user``'s partition (kafka-python's default partitioner)."""
    return ((murmur2(user.encode()) & 0x7FFFFFFF) % partitions) % workers


def run(
    events: list[Event], settings: Settings, workers: int, sync_every: int, batch: int,
    partitions: int,
) -> dict[str, float]:  # fmt: skip
    engines = [watched(Engine(settings)) for _ in range(workers)]
    syncs = [Sync(e, f"w{n}") for n, e in enumerate(engines)] if sync_every else []
    sent = 0
    collect_s = apply_s = 0.0
    since_sync = 0
    started = time.process_time()

    def share() -> None:
        nonlocal sent, collect_s, apply_s
        t = time.process_time()
        wire = [s.collect().encode() for s in syncs]
        collect_s += time.process_time() - t
        sent += sum(map(len, wire))
        t = time.process_time()
        for n, s in enumerate(syncs):
            for m, data in enumerate(wire):
                if m != n:
                    s.apply(Delta.decode(data))
        apply_s += time.process_time() - t

    for at in range(0, len(events), batch):
        shares: list[list[Event]] = [[] for _ in engines]
        for event in events[at : at + batch]:
            if isinstance(event, ItemEvent):
                for share_ in shares:
                    share_.append(event)
            else:
                shares[owner(event.user, partitions, workers)].append(event)
        for engine, mine in zip(engines, shares, strict=True):
            if mine:
                engine.process(mine)
        since_sync += batch
        if syncs and since_sync >= sync_every:
            share()
            since_sync = 0
    if syncs:
        share()
    cpu = time.process_time() - started
    boards = [scoreboard(e) for e in engines]
    hits = sum(b.ranking._hits for b in boards)
    positives = sum(b.ranking.n for b in boards)
    se = sum(b.ratings._se for b in boards)
    ratings = sum(b.ratings.n for b in boards)
    return {
        "hit_rate": hits / positives if positives else math.nan,
        "rmse": math.sqrt(se / ratings) if ratings else math.nan,
        "bytes_per_event": sent / len(events),
        "collect_us": 1e6 * collect_s / len(events),
        "apply_us": 1e6 * apply_s / len(events),
        "cpu_us": 1e6 * cpu / len(events),
        "apart": _apart(engines),
    }


def _apart(engines: list[Engine]) -> float:
    """The largest difference between two workers' ``item=`` latent rows, relative to the
    rows' largest norm (0 for one worker)."""
    if len(engines) < 2:
        return 0.0
    first = engines[0].model.ranker.table
    keys = [k for k in first.ids if k.startswith("item=")]
    rows = first.latents[first.find(keys)]
    worst = 0.0
    for other in engines[1:]:
        table = other.model.ranker.table
        found = table.find(keys)
        diff = np.abs(table.latents[found[found >= 0]] - rows[found >= 0]).max(initial=0.0)
        worst = max(worst, float(diff))
    return worst / float(np.linalg.norm(rows, axis=1).max(initial=1e-12))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("log", type=Path)
    parser.add_argument("--workers", default="1,2", help="comma-separated worker counts")
    parser.add_argument("--sync-events", type=int, default=1000)
    parser.add_argument("--batch", type=int, default=50)
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--limit", type=int, default=0, help="the first N records only")
    parser.add_argument(
        "--unscaled", action="store_true", help="send every change whole (no DENSE scaling)"
    )
    args = parser.parse_args()
    if args.unscaled:
        sync.DENSE = 10**12
    records = open_log(args.log)
    if args.limit:
        records = (r for n, r in zip(range(args.limit), records, strict=False))
    base = Settings()
    events, _ = decode(records, base)
    synced = replace(base, sync_interval_s=1.0)
    print(f"{args.log}: {len(events):,} events, micro-batches of {args.batch} stream events, "
          f"sync every {args.sync_events:,} events, {args.partitions} partitions")  # fmt: skip
    print("| workers | sharing | HitRate@10 | RMSE | bytes synced / event | collect µs / event "
          "| apply µs / event | CPU µs / event | item rows apart |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|---|")
    rows = [(1, "none (one worker)", base, 0)]
    for n in (int(w) for w in args.workers.split(",")):
        rows.append((n, "synced", synced, args.sync_events))
        if n > 1:
            rows.append((n, "none", synced, 0))
    for n, how, settings, every in rows:
        r = run(events, settings, n, every, args.batch, args.partitions)
        print(f"| {n} | {how} | {r['hit_rate']:.4f} | {r['rmse']:.4f} | "
              f"{r['bytes_per_event']:,.0f} | {r['collect_us']:.1f} | {r['apply_us']:.1f} | "
              f"{r['cpu_us']:.0f} | {r['apart']:.1e} |", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
