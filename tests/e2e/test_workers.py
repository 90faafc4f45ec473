"""Two workers in one consumer group: each knows every item; clicks are split, none twice."""

from __future__ import annotations

import dataclasses
import json
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


def _up(base: str) -> bool:
    try:
        return _json(base + "/ready")["partitions"] > 0
    except OSError:
        return False


def test_every_worker_knows_every_item_and_clicks_are_learned_once(stack):
    uid = uuid.uuid4().hex[:8]
    settings = dataclasses.replace(
        stack.isolated(f"two-{uid}"), log_interval_s=2.0, items_everywhere=True
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
    finally:
        for process in workers:
            process.send_signal(signal.SIGTERM)
        for process in workers:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
