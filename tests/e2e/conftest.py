"""The real stack (Tansu + Redis on loopback) and a real `streamrec worker` process."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import pytest
import redis
from prometheus_client.parser import text_string_to_metric_families

from streamer.polling import poll
from streamer.replay import LogRecord, open_log
from streamer.replay.producer import replay
from streamer.settings import Settings
from streamer.stack import LocalStack, create_topics

DATASET = Path(
    os.environ.get(
        "STREAMREC_TEST_DATASET",
        Path(__file__).resolve().parents[2].parent / "shared/datasets/movielens-100k",
    )
)


def movielens(ratings: int | None = None) -> tuple[list[LogRecord], list[LogRecord]]:
    """MovieLens-100K as the replay sends it: its items, then its first ``ratings`` ratings
    (all when None) in time order."""
    records = list(open_log(DATASET))
    items = [r for r in records if r.kind == "items"]
    return items, [r for r in records if r.kind == "clicks"][:ratings]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(predicate, timeout: float = 60.0, interval: float = 0.1):
    value = poll(predicate, timeout=timeout, interval=interval)
    if not value:
        raise AssertionError(f"not true within {timeout} s: {predicate}")
    return value


def start_worker(settings: Settings, log: Path) -> subprocess.Popen[bytes]:
    """A real `streamrec worker` process with ``settings``, its output appended to ``log``
    (its web server on a free port unless ``settings`` name one: workers run side by side)."""
    if settings.web_port == Settings().web_port:
        settings = dataclasses.replace(settings, web_port=free_port())
    return subprocess.Popen(
        [sys.executable, "-m", "streamer.cli", "worker"],
        env={**os.environ, **settings.as_env()},
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
    )


def worker_on_the_catalogue(
    settings: Settings, ratings: int | None, log: Path
) -> tuple[list[LogRecord], list[LogRecord], redis.Redis, subprocess.Popen[bytes]]:
    """Fresh topics holding MovieLens' items, and a worker started on them that has learned
    the catalogue: (the items, the first ``ratings`` ratings, not sent, a Redis client, the
    worker). The worker is killed if it does not get there."""
    create_topics(settings.broker, settings.topics, settings.partitions)
    items, rated = movielens(ratings)
    replay(items, settings, progress=False)
    client = redis.Redis.from_url(settings.redis_url, decode_responses=True)
    worker = start_worker(settings, log)
    try:
        wait_for(lambda: progress(client, settings)["events"] >= len(items), timeout=60)
    except BaseException:
        worker.kill()
        raise
    return items, rated, client, worker


@pytest.fixture(scope="session")
def stack(tmp_path_factory):
    settings = Settings(
        broker=f"127.0.0.1:{free_port()}",
        redis_url=f"redis://127.0.0.1:{free_port()}/0",
        state_dir=str(tmp_path_factory.mktemp("state")),
    )
    local = LocalStack(settings)
    local.up()
    yield settings
    local.down()


@pytest.fixture(scope="module")
def worker(stack):
    """A worker on fresh topics and a fresh consumer group, stopped with SIGTERM afterwards."""
    uid = uuid.uuid4().hex[:8]
    settings = dataclasses.replace(stack.isolated(f"test-{uid}"), log_interval_s=2.0)
    create_topics(settings.broker, settings.topics, settings.partitions)
    log = Path(settings.state_dir) / f"worker-{uid}.log"
    process = start_worker(settings, log)
    client = redis.Redis.from_url(settings.redis_url, decode_responses=True)
    try:
        yield settings, client, process
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            code = process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            pytest.fail(f"worker ignored SIGTERM for 30 s; see {log}")
        assert code == 0, f"worker exited with {code}; see {log}"


def progress(client, settings) -> dict:
    raw = client.get(f"{settings.redis_prefix}progress")
    return json.loads(raw) if raw else {"events": 0, "rejected": 0}


def rec_list(client, settings, user) -> dict | None:
    raw = client.get(f"{settings.redis_prefix}rec:{user}")
    return json.loads(raw) if raw else None


def http_get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()
    except OSError:
        return 0, b""


def metric_samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[sample.name, tuple(sorted(sample.labels.items()))] = sample.value
    return out


#: Debian's chromium, which `make e2e` installs (Playwright's own browser download is not used).
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def launch_chromium(playwright):
    """Headless Debian chromium, driven by Playwright."""
    return playwright.chromium.launch(
        executable_path=CHROMIUM,
        args=[
            "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
            "--no-first-run", "--disable-background-networking",
            "--disable-component-update", "--disable-sync",
        ],
    )  # fmt: skip
