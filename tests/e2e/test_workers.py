"""Two workers in one consumer group: each knows every item; clicks are split, none twice; what
each learns of items reaches the other (``streamer.sync``)."""

from __future__ import annotations

import dataclasses
import json
import math
import signal
import subprocess
import urllib.request
import uuid
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from streamer.replay.producer import replay
from streamer.replay.record import LogRecord

from .conftest import create_topics, free_port, movielens, start_worker, wait_for

pytestmark = pytest.mark.e2e

RATINGS = 2000


def _json(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=5) as response:
        return json.loads(response.read())


def _learned(base: str, topic: str) -> float:
    with urllib.request.urlopen(base + "/metrics", timeout=5) as response:
        text = response.read().decode()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = sample.labels
            if sample.name == "streamrec_events_total" and labels == {
                "topic": topic,
                "outcome": "learned",
            }:
                return sample.value
    return 0.0


def _interactions(base: str) -> int:
    """The interactions a worker has learned from, its own and the other's."""
    return int(_json(base + "/api/summary")["model"]["interactions_learned"])


def _apart(bases: list[str], items: list[str]) -> float:
    """The largest distance between the two workers' vectors of ``items``, relative to the
    vector's norm (vectors must be learned: norm > 0.1)."""
    worst = 0.0
    for item in items:
        a, b = (_json(f"{base}/api/item/{item}")["vector"] for base in bases)
        scale = math.sqrt(sum(x * x for x in a))
        assert scale > 0.1  # learned, not the first draw
        worst = max(worst, math.sqrt(sum((x - y) ** 2 for x, y in zip(a, b, strict=True))) / scale)
    return worst


def _up(base: str) -> bool:
    try:
        return _json(base + "/ready")["partitions"] > 0
    except OSError:
        return False


def test_every_worker_knows_every_item_and_clicks_are_learned_once(stack):
    uid = uuid.uuid4().hex[:8]
    settings = dataclasses.replace(
        stack.isolated(f"two-{uid}"),
        log_interval_s=2.0,
        items_everywhere=True,
        sync_interval_s=0.5,
    )
    create_topics(settings.broker, settings.topics, settings.partitions)
    workers, bases = [], []
    try:
        for n in range(2):
            mine = dataclasses.replace(settings, web_port=free_port())
            log = Path(settings.state_dir) / f"worker-two-{uid}-{n}.log"
            workers.append(start_worker(mine, log))
            bases.append(f"http://127.0.0.1:{mine.web_port}")
        for base in bases:  # both in the group, each with its share of the partitions
            wait_for(lambda base=base: _up(base), timeout=90, interval=0.5)
        items, ratings = movielens(RATINGS)
        replay(items, settings, progress=False)
        for base in bases:  # every item, in both
            wait_for(
                lambda base=base: _json(base + "/api/summary")["worker"]["catalogue"] == 1682,
                timeout=60,
                interval=0.5,
            )
        new = {"item": "brand-new", "title": "Late Arrival", "tags": ["Drama"]}
        replay([LogRecord("items", "brand-new", new, 0.0)], settings, progress=False)
        for base in bases:
            wait_for(lambda base=base: _json(base + "/api/item/brand-new")["known"], timeout=30)
        replay(ratings, settings, progress=False)
        wait_for(
            lambda: sum(_learned(base, "clicks") for base in bases) >= RATINGS,
            timeout=120,
            interval=0.5,
        )
        shares = [_learned(base, "clicks") for base in bases]
        assert sum(shares) == RATINGS  # each click learned by one worker, once
        assert all(shares)  # and both learned some: the partitions are split
        assert all(_learned(base, "items") == 1683 for base in bases)
        # what each learned of items reached the other: within a few sync intervals both have
        # learned from every rating (their own and the other's) and hold the same item vectors
        wait_for(lambda: all(_interactions(base) == RATINGS for base in bases), timeout=30)
        syncs = [_json(base + "/api/summary")["worker"]["sync"] for base in bases]
        assert all(s["applied"] > 0 and s["sent"] > 0 and s["rejected"] == 0 for s in syncs)
        assert all(0 <= s["staleness_s"] < 10 for s in syncs)
        popular = ["50", "100", "181", "258", "1"]  # rated by the users of both workers
        # once the stream is quiet, what each learned reaches the other in full (changes of
        # busy rows are metered, not dropped: streamer.sync.DENSE): the same item vectors
        wait_for(lambda: _apart(bases, popular) < 0.01, timeout=20, interval=0.5)
    finally:
        for process in workers:
            process.send_signal(signal.SIGTERM)
        for process in workers:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
