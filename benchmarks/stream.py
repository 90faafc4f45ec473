"""Stream figures on the real local stack: events/s (Faust's ceiling vs the full worker),
freshness under load, read-helper latency, worker memory."""

from __future__ import annotations

import dataclasses
import json
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import psutil
import redis

from streamer.client import get_recommendations
from streamer.replay.producer import replay
from streamer.replay.record import LogRecord
from streamer.settings import Settings
from streamer.stack import LocalStack, create_topics

#: Keys of the freshness probes: clicks by users never seen before.
PROBE_PREFIX = "probe-"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def local_stack() -> Iterator[Settings]:
    """Tansu + Redis on free loopback ports, state in a temporary directory; their settings."""
    with tempfile.TemporaryDirectory() as state:
        base = Settings(
            broker=f"127.0.0.1:{free_port()}",
            redis_url=f"redis://127.0.0.1:{free_port()}/0",
            state_dir=state,
        )
        stack = LocalStack(base)
        stack.up()
        try:
            yield base
        finally:
            stack.down()


def fresh(settings: Settings, **overrides: Any) -> Settings:
    """Settings with fresh topics, consumer group and Redis prefix."""
    isolated = settings.isolated(f"bench-{uuid.uuid4().hex[:8]}")
    return dataclasses.replace(isolated, log_interval_s=1.0, **overrides)


class Process:
    """A worker process (the real one or the trivial app) on ``settings``."""

    def __init__(
        self, settings: Settings, module: str, log: Path, code: Path | None = None
    ) -> None:
        command = [sys.executable, "-m", module]
        if module == "streamer.cli":
            command.append("worker")
        self.settings = settings
        self.redis = redis.Redis.from_url(settings.redis_url)
        # ``code``: run another checkout's streamer (and empty agents) under this harness; from
        # that directory, since ``python -m`` puts the working directory before PYTHONPATH
        path = {"PYTHONPATH": str(code)} if code else {}
        self.process = subprocess.Popen(
            command,
            cwd=code,
            env={**os.environ, **settings.as_env(), **path},
            stdout=log.open("wb"),
            stderr=subprocess.STDOUT,
        )
        self.ps = psutil.Process(self.process.pid)

    def progress(self) -> dict[str, Any]:
        raw = self.redis.get(f"{self.settings.redis_prefix}progress")
        return json.loads(raw) if raw else {"events": 0}

    def figures(self) -> dict[str, Any]:
        raw = self.redis.get(f"{self.settings.redis_prefix}worker")
        return json.loads(raw) if raw else {}

    def _tree(self) -> list[psutil.Process]:
        """The process and those it started (the engine's own: ``STREAMREC_ENGINE_PROCESS``)."""
        return [self.ps, *self.ps.children(recursive=True)]

    def rss_mb(self) -> float:
        """Resident memory of the process and of those it started, each page counted once:
        the sum of their proportional set sizes (PSS: a page shared by n of them counts 1/n
        in each). Their RSS would count shared pages in each: the libraries both the worker
        and the engine's process map, and a snapshot's forked copy (``streamer.forked``),
        which shares nearly all the engine's pages (one `make bench` summed 2.6 GB of RSS
        where the tree held ~1.1 GB and the copy)."""
        return self._tree_sum(lambda p: p.memory_full_info().pss) / 2**20

    def _tree_sum(self, read: Callable[[psutil.Process], float]) -> float:
        """``read`` summed over the process and those it started; a snapshot's forked copy
        that ended meanwhile is left out."""
        total = 0.0
        for p in self._tree():
            try:
                total += read(p)
            except psutil.NoSuchProcess:
                continue
        return total

    def wait_events(self, count: int, timeout: float = 600) -> Window:
        """Poll until ``count`` events are processed; the window from the first batch on."""
        deadline = time.monotonic() + timeout
        first: tuple[float, int, float] | None = None
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"worker exited with {self.process.returncode}")
            seen = self.progress()
            if seen["events"] and first is None:
                first = (seen["ts"], seen["events"], self.cpu_s())
            if seen["events"] >= count and first is not None:
                return Window(*first, seen["ts"], seen["events"], self.cpu_s())
            time.sleep(0.02)
        raise TimeoutError(f"{self.progress()} after {timeout} s, wanted {count}")

    def cpu_s(self) -> float:
        """CPU seconds used so far by all the threads of the process and of those it started
        (the engine's process lives as long as the worker; a snapshot's forked copy counts
        while it runs, and once it ended and was waited for, in its parent's children's
        times)."""

        def used(p: psutil.Process) -> float:
            t = p.cpu_times()
            return float(t.user + t.system + t.children_user + t.children_system)

        return self._tree_sum(used)

    def stop(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()


class Window(NamedTuple):
    """A process's progress from its first batch (as written to Redis) to its last."""

    first_ts: float
    first_events: int
    first_cpu_s: float
    last_ts: float
    last_events: int
    last_cpu_s: float

    @property
    def events_per_s(self) -> float:
        elapsed = self.last_ts - self.first_ts
        return (self.last_events - self.first_events) / elapsed if elapsed > 0 else float("nan")

    @property
    def cpu_us_per_event(self) -> float:
        events = self.last_events - self.first_events
        cpu = self.last_cpu_s - self.first_cpu_s
        return cpu / events * 1e6 if events else float("nan")


def run_consumer(
    settings: Settings, module: str, records: list[LogRecord], log: Path, code: Path | None = None
) -> tuple[Process, Window]:
    """Pre-produce ``records``, then start a consumer and measure it over all of them."""
    create_topics(settings.broker, settings.topics, settings.partitions)
    replay(records, settings, progress=False)
    process = Process(settings, module, log, code)
    return process, process.wait_events(len(records))


def freshness_at(process: Process, records: list[LogRecord], rate: float) -> dict[str, Any]:
    """Produce ``records`` at ``rate`` events/s with a probe click every 10th event: a user
    never seen before, so the time from its send to its list in Redis is that event's
    freshness as a client sees it (Redis polled every millisecond)."""
    from kafka import KafkaProducer

    from streamer.replay.producer import Pacer

    settings = process.settings
    producer = KafkaProducer(bootstrap_servers=settings.broker, linger_ms=0, acks=1)
    sent: dict[str, float] = {}
    seen: dict[str, float] = {}
    done = threading.Event()
    poller = threading.Thread(target=_poll, args=(settings, sent, seen, done), daemon=True)
    poller.start()
    pacer = Pacer(speed=0, rate=rate)
    started = time.monotonic()
    phase = uuid.uuid4().hex[:6]
    for n, record in enumerate(records):
        pacer.wait(0.0)
        if n % 10 == 0:
            user = f"{PROBE_PREFIX}{phase}-{n}"
            value = {"user": user, "item": record.value["item"], "type": "click"}
            sent[user] = time.time()
            producer.send(
                settings.topic_clicks, key=user.encode(), value=json.dumps(value).encode()
            )
        else:
            producer.send(settings.topic_clicks, key=record.key.encode(), value=record.payload())
    producer.flush()
    offered = len(records) / (time.monotonic() - started)
    deadline = time.monotonic() + 60
    while len(seen) < len(sent) and time.monotonic() < deadline:
        time.sleep(0.05)
    done.set()
    poller.join()
    producer.close()
    delays = np.array([seen[u] - sent[u] for u in seen]) * 1000
    return {
        "offered_events_per_s": round(offered),
        "probes": len(sent),
        "probes_lost": len(sent) - len(seen),
        "freshness_p50_ms": round(float(np.percentile(delays, 50)), 1),
        "freshness_p99_ms": round(float(np.percentile(delays, 99)), 1),
    }


def _poll(settings: Settings, sent: dict[str, float], seen: dict[str, float], done: Any) -> None:
    client = redis.Redis.from_url(settings.redis_url)
    while not done.is_set():
        waiting = [u for u in list(sent) if u not in seen]
        if waiting:
            found = client.mget([f"{settings.redis_prefix}rec:{u}" for u in waiting])
            now = time.time()
            for user, value in zip(waiting, found, strict=True):
                if value is not None:
                    seen[user] = now
        time.sleep(0.001)


def _reader(args: tuple[str, str, list[str], int, int, float]) -> list[float]:
    """``count`` lookups of random users; paced at ``rate`` per second (0: back to back)."""
    url, prefix, users, count, seed, rate = args
    client = redis.Redis.from_url(url)
    rng = random.Random(seed)
    out = []
    due = time.perf_counter()
    for _ in range(count):
        if rate:
            due += 1.0 / rate
            pause = due - time.perf_counter()
            if pause > 0:
                time.sleep(pause)
        user = rng.choice(users)
        started = time.perf_counter()
        get_recommendations(client, user, k=10, prefix=prefix)
        out.append(time.perf_counter() - started)
    return out


def lookups(
    settings: Settings,
    users: list[str],
    readers: int = 2,
    per_reader: int = 5000,
    rate: float = 0.0,
) -> dict[str, Any]:
    """The read helper from ``readers`` concurrent reader processes: latency percentiles.

    ``rate`` paces each reader (lookups/s, open loop, as clients arrive); 0 runs them back to
    back, which on 2 cores measures the scheduler as much as Redis."""
    from multiprocessing import get_context

    jobs = [
        (settings.redis_url, settings.redis_prefix, users, per_reader, n, rate)
        for n in range(readers)
    ]
    with get_context("spawn").Pool(readers) as pool:
        latencies = [x for part in pool.map(_reader, jobs) for x in part]
    ms = np.asarray(latencies) * 1000
    return {
        "readers": readers,
        "offered_lookups_per_s": round(readers * rate) if rate else "back to back",
        "p50_ms": round(float(np.percentile(ms, 50)), 3),
        "p99_ms": round(float(np.percentile(ms, 99)), 3),
    }


def synthetic(n_items: int, n_users: int, n_clicks: int, seed: int = 0) -> Iterator[LogRecord]:
    """``n_items`` items with tags, then clicks by users uniform over ``n_users``, items Zipf."""
    rng = np.random.default_rng(seed)
    tags = [f"tag{t}" for t in range(200)]
    for i in range(n_items):
        item = f"i{i}"
        value = {"item": item, "tags": [tags[i % 200], tags[(i * 7) % 200]], "ts": 0.0}
        yield LogRecord("items", item, value, 0.0)
    users = rng.integers(n_users, size=n_clicks)
    items = np.minimum(rng.zipf(1.2, size=n_clicks) - 1, n_items - 1)
    devices = ("mobile", "tv", "desktop")
    for n, (user, item) in enumerate(zip(users.tolist(), items.tolist(), strict=True)):
        value = {
            "user": f"u{user}",
            "item": f"i{item}",
            "type": "click",
            "ts": 1.0 + n,
            "context": {"device": devices[user % 3]},
        }
        yield LogRecord("clicks", f"u{user}", value, 1.0 + n)
