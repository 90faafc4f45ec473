"""A worker frozen mid-stream (SIGSTOP) for longer than its session timeout, then thawed: it
loses nothing and learns nothing twice.

On Apache Kafka the group would expire the frozen member and assign its partitions again from
the last commit it accepted, behind what the engine learned: those messages come again and
are skipped (``streamer.redelivery``, unit-tested in ``tests/unit/test_pipeline.py``). The
local broker (Tansu 0.6) does not expire it: the thawed worker's heartbeat and commit are
accepted, nothing is delivered again (``redelivered`` stays 0, reported, not asserted)."""

from __future__ import annotations

import dataclasses
import json
import signal
import threading
import time
import uuid
from pathlib import Path

import pytest

from streamer.replay.producer import replay
from tests.e2e.conftest import DATASET, progress, wait_for, worker_on_the_catalogue

pytestmark = [pytest.mark.e2e, pytest.mark.chaos]

RATINGS = 4_000
SESSION_S = 6.0


@pytest.mark.skipif(not DATASET.exists(), reason="MovieLens-100K not found")
def test_a_worker_frozen_past_its_session_learns_each_event_once(stack):
    uid = uuid.uuid4().hex[:8]
    settings = dataclasses.replace(
        stack.isolated(f"lapse-{uid}"),
        partitions=2,
        log_interval_s=1.0,
        session_timeout_s=SESSION_S,
        snapshot_interval_s=0.0,  # no snapshot: only the redelivery filter stands between
    )
    log = Path(settings.state_dir) / f"worker-{uid}.log"
    _, ratings, client, worker = worker_on_the_catalogue(settings, RATINGS, log)
    try:
        producer = threading.Thread(
            target=replay, args=(ratings, settings), kwargs={"rate": 250.0, "progress": False}
        )
        producer.start()
        wait_for(lambda: progress(client, settings).get("model_version", 0) >= 1000, timeout=60)
        worker.send_signal(signal.SIGSTOP)  # frozen mid-stream, past its session
        time.sleep(2.5 * SESSION_S)
        worker.send_signal(signal.SIGCONT)
        producer.join(timeout=120)
        learned = lambda: progress(client, settings).get("model_version", 0)  # noqa: E731
        wait_for(lambda: learned() >= RATINGS, timeout=120)
        time.sleep(3.0)  # nothing more comes: none learned twice
        figures = json.loads(client.get(f"{settings.redis_prefix}worker") or "{}")
        assert learned() == RATINGS, f"{learned()} learned of {RATINGS}; see {log}"
        assert figures["processing_errors"] == 0 and figures["rejected"] == 0
        print(f"redelivered after the thaw: {figures['redelivered']}")
    finally:
        worker.send_signal(signal.SIGCONT)
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(timeout=30) == 0, f"see {log}"
