"""``make bench``: every figure of docs/benchmarks.md, measured side by side in one run.

    python -m benchmarks [--dataset DIR] [--out DIR] [--quick]

Starts its own local stack (Tansu + Redis on free loopback ports), runs Faust's ceiling and the
full worker on the same topic layout, then freshness, lookups, memory, 1 and 2 sharing workers
(``benchmarks.workers_stream``) and ANN recall, and
writes ``results.json`` and ``results.md`` in ``--out`` (default ``benchmarks/results``).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path
from typing import Any

import psutil

from benchmarks import ann, stream, workers_stream
from streamer.replay import open_log
from streamer.settings import Settings

DATASET = Path(__file__).resolve().parents[1].parent / "shared/datasets/movielens-100k"


#: Lookups per second per reader for the headline lookup figures (2 readers: 4,000/s).
LOOKUP_RATE = 2000.0


def machine() -> dict[str, Any]:
    return {
        "cpu": platform.processor() or platform.machine(),
        "cores": psutil.cpu_count(),
        "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


def run(dataset: Path, out: Path, quick: bool) -> dict[str, Any]:
    results: dict[str, Any] = {"machine": machine(), "started": time.strftime("%Y-%m-%d %H:%M")}
    ml = list(open_log(dataset))
    with stream.local_stack() as base:
        results.update(stream_figures(base, ml, Path(base.state_dir), quick))
        print("1 and 2 sharing workers over the same events ...", flush=True)
        records = ml[:21_682] if quick else ml
        logs_dir = Path(base.state_dir)
        results["workers"] = [workers_stream.run(base, records, 1, logs_dir, share=False)] + [
            workers_stream.run(base, records, n, logs_dir) for n in (1, 2)
        ]
    results["ann"] = ann_figures(quick)
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(results, indent=1))
    (out / "results.md").write_text(markdown(results))
    return results


def stream_figures(base: Settings, ml: list[Any], logs: Path, quick: bool) -> dict[str, Any]:
    out: dict[str, Any] = {"pipeline_events": len(ml)}
    ratings = [r for r in ml if r.kind == "clicks"]
    phase = 5_000 if quick else 12_000
    print(f"Faust's ceiling: empty agents over {len(ml):,} events ...", flush=True)
    trivial, window = stream.run_consumer(
        stream.fresh(base), "benchmarks.trivial_app", ml, logs / "trivial.log"
    )
    rate = window.events_per_s
    try:
        out["trivial_agent_events_per_s"] = round(rate)
        print(f"  {rate:,.0f} events/s; their freshness at 1,000 events/s ...", flush=True)
        out["trivial_freshness_at_1000"] = stream.freshness_at(trivial, ratings[:phase], 1000)
    finally:
        trivial.stop()
    print("the full worker over the same events ...", flush=True)
    settings = stream.fresh(base)
    worker, window = stream.run_consumer(settings, "streamer.cli", ml, logs / "worker.log")
    rate = window.events_per_s
    out["pipeline_events_per_s"] = round(rate)
    out["pipeline_vs_trivial"] = round(rate / out["trivial_agent_events_per_s"], 3)
    print(f"  {rate:,.0f} events/s", flush=True)
    try:
        print("freshness at 1,000 events/s and at 80% of the maximum ...", flush=True)
        out["freshness_at_1000"] = stream.freshness_at(worker, ratings[:phase], 1000)
        at80 = 0.8 * rate
        out["freshness_at_80pct"] = stream.freshness_at(
            worker, ratings[: int(max(phase, 8 * at80))], at80
        )
        users = sorted({r.key for r in ratings})
        print("lookups ...", flush=True)
        paced = stream.lookups(settings, users, rate=LOOKUP_RATE)
        out["lookup_p50_ms"], out["lookup_p99_ms"] = paced["p50_ms"], paced["p99_ms"]
        out["lookups_paced"] = paced
        out["lookups_back_to_back"] = stream.lookups(settings, users)
    finally:
        worker.stop()
    out.update(synthetic_figures(base, logs, quick))
    return out


def synthetic_figures(base: Settings, logs: Path, quick: bool) -> dict[str, Any]:
    n_items, n_users, n_clicks = (
        (20_000, 200_000, 20_000) if quick else (100_000, 1_000_000, 100_000)
    )
    print(f"synthetic: {n_items:,} items, {n_users:,} users, {n_clicks:,} clicks ...", flush=True)
    records = list(stream.synthetic(n_items, n_users, n_clicks))
    settings = stream.fresh(base)
    from streamer.replay.producer import replay
    from streamer.stack import create_topics

    create_topics(settings.broker, settings.topics, settings.partitions)
    worker = stream.Process(settings, "streamer.cli", logs / "synthetic.log")
    try:
        time.sleep(1.0)
        idle_mb = worker.rss_mb()
        replay(records[:n_items], settings, progress=False)
        worker.wait_events(n_items)
        items_mb = worker.rss_mb()
        replay(records[n_items:], settings, progress=False)
        window = worker.wait_events(n_items + n_clicks)
        clicks_mb = worker.rss_mb()
        users = len({r.key for r in records[n_items:]})
    finally:
        worker.stop()
    return {
        "synthetic": {
            "items": n_items,
            "user_space": n_users,
            "clicks": n_clicks,
            "users_seen": users,
        },
        "synthetic_events_per_s": round(window.events_per_s),
        "worker_rss_idle_mb": round(idle_mb),
        "worker_rss_after_items_mb": round(items_mb),
        "worker_rss_after_clicks_mb": round(clicks_mb),
        "worker_mb_per_100k_users": round((clicks_mb - items_mb) / users * 100_000, 1),
    }


def ann_figures(quick: bool) -> dict[str, Any]:
    sizes = (
        [(20_000, 32)]
        if quick
        else [(100_000, 32), (100_000, 64), (1_000_000, 32), (1_000_000, 64)]
    )
    out: dict[str, Any] = {"rows": []}
    for n, dim in sizes:
        print(f"ANN: {n:,} items x {dim} dims ...", flush=True)
        rows = ann.run(n, dim, queries=1000)
        out["rows"] += rows
        chosen = ann.best(rows)
        out[f"{n}x{dim}"] = {
            "ann_recall_at_20": chosen["recall_at_20"],
            "ann_queries_per_s": chosen["queries_per_s_per_core"],
            "backend": chosen["backend"],
        }
    return out


def markdown(r: dict[str, Any]) -> str:
    m = r["machine"]
    lines = [
        f"Machine: {m['cores']} cores, {m['memory_gb']} GB, {m['cpu']}, Python {m['python']}; "
        f"broker and Redis on the same machine. Run {r['started']}.",
        "",
        "| figure | value |",
        "|---|---|",
    ]
    for key in (
        "trivial_agent_events_per_s",
        "pipeline_events_per_s",
        "pipeline_vs_trivial",
        "synthetic_events_per_s",
        "lookup_p50_ms",
        "lookup_p99_ms",
        "worker_rss_idle_mb",
        "worker_rss_after_items_mb",
        "worker_rss_after_clicks_mb",
        "worker_mb_per_100k_users",
    ):
        lines.append(f"| `{key}` | {r.get(key)} |")
    for name in ("lookups_paced", "lookups_back_to_back"):
        f = r.get(name, {})
        lines.append(
            f"| `{name}` ({f.get('readers')} readers, {f.get('offered_lookups_per_s')}/s) | "
            f"p50 {f.get('p50_ms')} ms, p99 {f.get('p99_ms')} ms |"
        )
    for phase in ("trivial_freshness_at_1000", "freshness_at_1000", "freshness_at_80pct"):
        f = r.get(phase, {})
        lines.append(
            f"| `{phase}` (offered {f.get('offered_events_per_s')} ev/s) | "
            f"p50 {f.get('freshness_p50_ms')} ms, p99 {f.get('freshness_p99_ms')} ms |"
        )
    if r.get("workers"):
        lines += ["", workers_stream.markdown(r["workers"])]
    lines += [
        "",
        "| items x dims | backend | recall@20 | queries/s per core | build s |",
        "|---|---|---|---|---|",
    ]
    for row in r["ann"]["rows"]:
        lines.append(
            f"| {row['items']:,} x {row['dim']} | {row['backend']} | {row['recall_at_20']} | "
            f"{row['queries_per_s_per_core']:,} | {row['build_s']} |"
        )
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--dataset", type=Path, default=DATASET)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    parser.add_argument("--quick", action="store_true", help="small sizes, for a smoke run")
    args = parser.parse_args()
    started = time.monotonic()
    results = run(args.dataset, args.out, args.quick)
    print(markdown(results))
    print(f"({time.monotonic() - started:.0f} s; wrote {args.out / 'results.json'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
