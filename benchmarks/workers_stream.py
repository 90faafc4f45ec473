"""N sharing workers on the real local stack: events/s, CPU per event, sync traffic per event
and the staleness of the deltas applied, for 1 and 2 workers (or ``--workers``) over the same
pre-produced log.

    python -m benchmarks.workers_stream [--dataset DIR] [--workers 1,2] [--limit N] [--rate R]

Each run gets fresh topics and a fresh consumer group; every worker shares
(``STREAMREC_SYNC_INTERVAL_S``, 1 s by default) and reads every item. The window runs from
the first event any worker learned to the last; events are the clicks (items are read by
every worker and counted once). CPU is the workers' own (user + system), summed.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
import urllib.request
from pathlib import Path
from typing import Any

import psutil
from prometheus_client.parser import text_string_to_metric_families

from benchmarks import stream
from streamer.polling import poll
from streamer.replay import open_log
from streamer.replay.producer import replay
from streamer.replay.record import LogRecord
from streamer.settings import Settings
from streamer.stack import create_topics

DATASET = Path(__file__).resolve().parents[1].parent / "shared/datasets/movielens-100k"


def _get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as response:
        return str(response.read().decode())


def _learned(port: int) -> int:
    """Clicks a worker learned (0 until its web server answers)."""
    try:
        text = _get(f"http://127.0.0.1:{port}/metrics")
    except OSError:
        return 0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "streamrec_events_total" and sample.labels == {
                "topic": "clicks",
                "outcome": "learned",
            }:
                return int(sample.value)
    return 0


def _wait_ready(ports: list[int], timeout: float = 120.0) -> None:
    """Until every worker has partitions of its own (the group has settled)."""

    def settled() -> bool:
        try:
            return all(json.loads(_get(f"http://127.0.0.1:{p}/ready"))["partitions"] for p in ports)
        except (OSError, ValueError, KeyError):
            return False

    if not poll(settled, timeout=timeout, interval=0.5):
        raise TimeoutError("the workers did not all get partitions")


def _staleness(ports: list[int]) -> dict[str, float | None]:
    """Quantiles of the staleness of the deltas applied, from the workers' histograms."""
    buckets: dict[float, float] = {}
    for port in ports:
        for family in text_string_to_metric_families(_get(f"http://127.0.0.1:{port}/metrics")):
            if family.name != "streamrec_sync_staleness_seconds":
                continue
            for sample in family.samples:
                if sample.name.endswith("_bucket"):
                    le = float(sample.labels["le"])
                    buckets[le] = buckets.get(le, 0.0) + sample.value
    total = buckets.get(float("inf"), 0.0)
    out: dict[str, float | None] = {"deltas_applied": total}
    for q in (0.5, 0.99):
        out[f"p{round(q * 100)}_s"] = (
            next((le for le, n in sorted(buckets.items()) if n >= q * total), None)
            if total
            else None
        )
    return out


def _accuracy(models: list[dict[str, Any]]) -> dict[str, float | None]:
    """The prequential HitRate@10 and RMSE of the lists and predictions every user got, over
    all workers (each worker's figures weighted by its positives and ratings)."""
    positives = sum(m["positives"] for m in models)
    ratings = sum(m["ratings"] for m in models)
    hits = sum((m["hit_rate"] or 0.0) * m["positives"] for m in models)
    squares = sum((m["rmse"] or 0.0) ** 2 * m["ratings"] for m in models)
    return {
        "hit_rate": round(hits / positives, 4) if positives else None,
        "rmse": round((squares / ratings) ** 0.5, 4) if ratings else None,
    }


def run(
    base: Settings,
    records: list[LogRecord],
    workers: int,
    logs: Path,
    share: bool = True,
    rate: float = 0.0,
) -> dict[str, Any]:
    """``workers`` workers over ``records``, sharing unless not ``share`` (one worker alone,
    for reference): pre-produced (their throughput), or with ``rate`` produced at that many
    events/s once every worker has its partitions (their accuracy on a stream that arrives in
    time order: pre-produced, each worker runs through its partitions at its own pace)."""
    interval = (base.sync_interval_s or 1.0) if share else 0.0
    settings = stream.fresh(base, sync_interval_s=interval, web_enabled=True)
    create_topics(settings.broker, settings.topics, settings.partitions)
    if not rate:
        replay(records, settings, progress=False)
    clicks = sum(1 for r in records if r.kind == "clicks")
    ports = [stream.free_port() for _ in range(workers)]
    processes = [
        stream.Process(dataclasses.replace(settings, web_port=port), "streamer.cli",
                       logs / f"workers-{workers}-{n}.log")
        for n, port in enumerate(ports)
    ]  # fmt: skip
    if rate:
        _wait_ready(ports)
        items = [r for r in records if r.kind == "items"]
        replay(items, settings, progress=False)
        time.sleep(2.0)  # every worker has read the catalogue
        replay([r for r in records if r.kind != "items"], settings, rate=rate, progress=False)
    try:
        first: tuple[float, float] | None = None
        deadline = time.monotonic() + 900
        while time.monotonic() < deadline:
            learned = sum(_learned(p) for p in ports)
            if learned and first is None:
                first = (time.monotonic(), sum(p.cpu_s() for p in processes))
                first_learned = learned
            if learned >= clicks:
                break
            time.sleep(0.5)
        else:
            raise TimeoutError(f"{learned} of {clicks} clicks learned")
        assert first is not None
        elapsed = time.monotonic() - first[0]
        cpu = sum(p.cpu_s() for p in processes) - first[1]
        done = clicks - first_learned
        time.sleep(2 * settings.sync_interval_s)  # the last deltas applied
        summaries = [json.loads(_get(f"http://127.0.0.1:{p}/api/summary")) for p in ports]
        figures = [s["worker"] for s in summaries]
        sent = sum(f["sync"]["sent_bytes"] for f in figures if "sync" in f)
        users = sum(f["sync"]["users_sent_bytes"] for f in figures if "sync" in f)
        rss = [round(p.rss_mb()) for p in processes]
        return {
            "workers": workers,
            "clicks": clicks,
            "events_per_s": round(done / elapsed) if elapsed > 0 else None,
            "cpu_us_per_event": round(cpu / done * 1e6) if done else None,
            "sync_bytes_per_event": round(sent / clicks),
            "users_bytes_per_event": round(users / clicks),
            "staleness": _staleness(ports),
            "rss_mb": rss,
            "sharing": share,
            "clicks_per_worker": [_learned(p) for p in ports],
            **_accuracy([s["model"] for s in summaries]),
        }
    finally:
        for process in processes:
            process.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--dataset", type=Path, default=DATASET)
    parser.add_argument("--workers", default="1,2")
    parser.add_argument("--limit", type=int, default=0, help="the first N records only")
    parser.add_argument(
        "--rate", type=float, default=0.0, help="produce at this many events/s (accuracy)"
    )
    args = parser.parse_args()
    records = list(open_log(args.dataset))
    if args.limit:
        records = records[: args.limit]
    print(f"{psutil.cpu_count()} cores; {len(records):,} records of {args.dataset}", flush=True)
    rows = []
    with stream.local_stack() as base:
        print("1 worker alone (no sharing) ...", flush=True)
        rows.append(run(base, records, 1, Path(base.state_dir), share=False, rate=args.rate))
        for n in (int(w) for w in args.workers.split(",")):
            print(f"{n} sharing worker(s) ...", flush=True)
            rows.append(run(base, records, n, Path(base.state_dir), rate=args.rate))
            print(f"  {rows[-1]}", flush=True)
    print(markdown(rows))
    return 0


def markdown(rows: list[dict[str, Any]]) -> str:
    """The runs as a table."""
    out = [
        "| workers | sharing | events/s | CPU µs / event (all workers) | deltas + users' state, "
        "bytes / event | "
        "staleness p50 / p99 (s) | RSS MB per worker | clicks per worker | HitRate@10 | RMSE |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        st = r["staleness"]
        out.append(
            f"| {r['workers']} | {'yes' if r['sharing'] else 'no'} | {r['events_per_s']:,} | "
            f"{r['cpu_us_per_event']} | "
            f"{r['sync_bytes_per_event']:,} + {r['users_bytes_per_event']:,} | "
            f"{st['p50_s']} / {st['p99_s']} | {r['rss_mb']} | "
            f"{r['clicks_per_worker']} | {r['hit_rate']} | {r['rmse']} |"
        )
    return "\n".join(out)


if __name__ == "__main__":
    raise SystemExit(main())
