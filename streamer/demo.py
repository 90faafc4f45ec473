"""The demo: local stack, a real worker process, MovieLens-100K replayed, lists read back."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from dataclasses import replace
from pathlib import Path
from typing import Any

import redis

from streamer.client import get_recommendations
from streamer.polling import poll
from streamer.replay.movielens import download, is_movielens, read_items, verify
from streamer.replay.producer import replay
from streamer.replay.sources import open_log
from streamer.security import kafka_options
from streamer.settings import Settings
from streamer.stack import LocalStack

REPO_DATASET = Path(__file__).resolve().parents[1].parent / "shared/datasets/movielens-100k"
CONTEXTS = ({"device": "tv", "hour": "21"}, {"device": "mobile", "hour": "8"})


def find_dataset(given: Path | None, settings: Settings) -> Path:
    """The given directory, the shared copy beside the checkout, or a verified download."""
    for candidate in (given, Path("../shared/datasets/movielens-100k"), REPO_DATASET):
        if candidate is not None and is_movielens(candidate):
            verify(candidate)
            return candidate
    if given is not None:
        raise SystemExit(f"{given} is not a MovieLens-100K directory (u.data, u.item, u.user)")
    target = settings.state_path / "ml-100k"
    if is_movielens(target):
        return target
    print(f"downloading MovieLens-100K from GroupLens into {target} (research use only) ...")
    return download(target)


def start_worker(settings: Settings, name: str = "worker") -> subprocess.Popen[bytes]:
    log = (settings.state_path / f"{name}.log").open("ab")
    env = {**os.environ, **settings.as_env()}
    return subprocess.Popen(
        [sys.executable, "-m", "streamer.cli", "worker"],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def stop_worker(process: subprocess.Popen[bytes], timeout: float = 30.0) -> int:
    process.send_signal(signal.SIGTERM)
    try:
        return process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        return process.wait()


def wait_for_events(
    client: Any, settings: Settings, count: int, timeout: float, ports: list[int] | None = None
) -> int:
    """Wait until the worker reports ``count`` events processed (several workers: their sum,
    from their web servers on ``ports``); returns what it reached."""

    def seen() -> int:
        if ports:
            return sum(_summary(port)["worker"]["events"] for port in ports)
        raw = client.get(f"{settings.redis_prefix}progress")
        return int(json.loads(raw)["events"]) if raw else 0

    return poll(seen, lambda n: n >= count, timeout, 0.25)


def _summary(port: int) -> dict[str, Any]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/summary", timeout=5) as r:
            return dict(json.loads(r.read()))
    except OSError:  # not up yet
        return {"worker": {"events": 0}}


def show(title: str, result: dict[str, Any], titles: dict[str, str]) -> list[str]:
    items = [entry["item"] for entry in result["items"]]
    print(f"  {title} [{result.get('source')}] context={result.get('context')}")
    for rank, entry in enumerate(result["items"][:5], 1):
        item = entry["item"]
        print(f"    {rank}. {titles.get(item, item)}  ({entry.get('strategy', '-')})")
    return items


def run_demo(
    settings: Settings, dataset: Path | None, limit: int, keep: bool, workers: int = 1
) -> int:
    """The demo with ``workers`` workers in one consumer group (several: each on its own web
    port, sharing what it learns every second unless ``STREAMREC_SYNC_INTERVAL_S`` says)."""
    settings.state_path.mkdir(parents=True, exist_ok=True)
    path = find_dataset(dataset, settings)
    stack = LocalStack(settings)
    print(f"starting the local stack (broker {settings.broker}, Redis {settings.redis_url})")
    stack.up()
    ports: list[int] = []
    if workers > 1:
        interval = settings.sync_interval_s or 1.0
        ports = [settings.web_port + n for n in range(workers)]
        mine = [replace(settings, web_port=p, sync_interval_s=interval) for p in ports]
    else:
        mine = [settings]
    names = ["worker"] if workers == 1 else [f"worker-{n}" for n in range(workers)]
    processes = [start_worker(s, name) for s, name in zip(mine, names, strict=True)]
    client = redis.Redis.from_url(settings.redis_url, decode_responses=True)
    try:
        client.delete(f"{settings.redis_prefix}progress")
        records = list(open_log(path))[:limit]
        print(f"replaying {len(records)} MovieLens-100K events from {path}")
        summary = replay(records, settings, progress=sys.stdout.isatty())
        print(f"  {summary}")
        reached = wait_for_events(client, settings, summary.total, timeout=300, ports=ports)
        logs = ", ".join(str(settings.state_path / f"{name}.log") for name in names)
        print(f"{len(processes)} worker(s) processed {reached} events (logs: {logs})")
        if any(p.poll() is not None for p in processes):
            raise SystemExit("a worker exited; see its log")
        for port in ports:
            figures = _summary(port)["worker"]
            print(
                f"  worker on port {port}: {figures['events']} events, sync {figures.get('sync')}"
            )
        titles = {r.key: r.value["title"] for r in read_items(path, 0.0)}
        users = [u for u, _ in Counter(r.key for r in records if r.kind == "clicks").most_common(3)]
        return demo_contexts(client, settings, users, titles)
    finally:
        if keep:
            pids = " ".join(str(p.pid) for p in processes)
            print(
                f"left running: workers {pids}; stop with `kill {pids}` and `streamrec stack down`"
            )
        else:
            for process in processes:
                stop_worker(process)
            stack.down()
            print("stopped the worker(s) and the local stack")


def demo_contexts(client: Any, settings: Settings, users: list[str], titles: dict[str, str]) -> int:
    from kafka import KafkaProducer

    producer = KafkaProducer(bootstrap_servers=settings.broker, **kafka_options(settings))
    changed = 0
    for user in users:
        print(f"\nuser {user}")
        before = get_recommendations(client, user, prefix=settings.redis_prefix)
        first = show("after replay", before, titles)
        for context in CONTEXTS:
            sent = time.time()
            event = {"user": user, "ts": sent, "context": context}
            producer.send(
                settings.topic_contexts, key=user.encode(), value=json.dumps(event).encode()
            )
            producer.flush()
            after = _wait_for_update(client, settings, user, before["published_ts"])
            delay = (after["published_ts"] - sent) * 1000
            items = show(f"context {context} ({delay:.0f} ms later)", after, titles)
            changed += items != first
            before = after
    producer.close()
    print(f"\n{changed} of {2 * len(users)} context changes changed the list")
    return 0 if changed else 1


def _wait_for_update(client: Any, settings: Settings, user: str, since: float) -> dict[str, Any]:
    return poll(
        lambda: get_recommendations(client, user, prefix=settings.redis_prefix),
        lambda result: result.get("published_ts", 0) > since,
        30.0,
        0.02,
    )
