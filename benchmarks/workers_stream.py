"""N sharing workers on the real local stack: events/s, CPU per event, sync traffic per event
and the staleness of the deltas applied, for 1 and 2 workers (or ``--workers``) over the same
pre-produced log.

    python -m benchmarks.workers_stream [--dataset DIR] [--workers 1,2] [--limit N]

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
        summary = json.loads(_get(f"http://127.0.0.1:{port}/api/summary"))
    except OSError:
        return 0
    return int(summary["worker"]["sync"]["learned_clicks"]) if "sync" in summary["worker"] else 0


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


def run(base: Settings, records: list[LogRecord], workers: int, logs: Path) -> dict[str, Any]:
    settings = stream.fresh(base, sync_interval_s=base.sync_interval_s or 1.0, web_enabled=True)
    create_topics(settings.broker, settings.topics, settings.partitions)
    replay(records, settings, progress=False)
    clicks = sum(1 for r in records if r.kind == "clicks")
    ports = [stream.free_port() for _ in range(workers)]
    processes = [
        stream.Process(dataclasses.replace(settings, web_port=port), "streamer.cli",
                       logs / f"workers-{workers}-{n}.log")
        for n, port in enumerate(ports)
    ]  # fmt: skip
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
            time.sleep(0.05)
        else:
            raise TimeoutError(f"{learned} of {clicks} clicks learned")
        assert first is not None
        elapsed = time.monotonic() - first[0]
        cpu = sum(p.cpu_s() for p in processes) - first[1]
        done = clicks - first_learned
        time.sleep(2 * settings.sync_interval_s)  # the last deltas applied
        figures = [json.loads(_get(f"http://127.0.0.1:{p}/api/summary"))["worker"] for p in ports]
        sent = sum(f["sync"]["sent_bytes"] for f in figures)
        rss = [round(p.rss_mb()) for p in processes]
        return {
            "workers": workers,
            "clicks": clicks,
            "events_per_s": round(done / elapsed) if elapsed > 0 else None,
            "cpu_us_per_event": round(cpu / done * 1e6) if done else None,
            "sync_bytes_per_event": round(sent / clicks),
            "staleness": _staleness(ports),
            "rss_mb": rss,
            "clicks_per_worker": [f["sync"]["learned_clicks"] for f in figures],
        }
    finally:
        for process in processes:
            process.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--dataset", type=Path, default=DATASET)
    parser.add_argument("--workers", default="1,2")
    parser.add_argument("--limit", type=int, default=0, help="the first N records only")
    args = parser.parse_args()
    records = list(open_log(args.dataset))
    if args.limit:
        records = records[: args.limit]
    print(f"{psutil.cpu_count()} cores; {len(records):,} records of {args.dataset}", flush=True)
    rows = []
    with stream.local_stack() as base:
        for n in (int(w) for w in args.workers.split(",")):
            print(f"{n} worker(s) ...", flush=True)
            rows.append(run(base, records, n, Path(base.state_dir)))
            print(f"  {rows[-1]}", flush=True)
    print("\n| workers | events/s | CPU µs / event (all workers) | sync bytes / event | "
          "staleness p50 / p99 (s) | RSS MB per worker | clicks per worker |")  # fmt: skip
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        st = r["staleness"]
        print(f"| {r['workers']} | {r['events_per_s']:,} | {r['cpu_us_per_event']} | "
              f"{r['sync_bytes_per_event']:,} | {st['p50_s']} / {st['p99_s']} | "
              f"{r['rss_mb']} | {r['clicks_per_worker']} |")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
