"""The broker goes away and comes back (the local one empty: it keeps topics in memory): the
worker reconnects by itself and learns what is produced after."""

from __future__ import annotations

import dataclasses
import json
import signal
import subprocess
import time
import uuid
from pathlib import Path

import pytest
import redis

from streamer import snapshot
from streamer.replay.producer import replay
from streamer.settings import Settings
from streamer.stack import LocalStack
from tests.e2e.conftest import (
    DATASET,
    free_port,
    movielens,
    progress,
    rec_list,
    start_worker,
    wait_for,
)

pytestmark = [pytest.mark.e2e, pytest.mark.chaos]


@pytest.mark.skipif(not DATASET.exists(), reason="MovieLens-100K not found")
@pytest.mark.parametrize("shared", [False, True], ids=["one-worker", "items-and-sync-feeds"])
def test_the_worker_reconnects_after_a_broker_restart(stack, tmp_path, shared):
    # the feeds outside the consumer group (every item, the other workers' deltas) too
    settings, local, ratings, worker, log = _learning_on_a_broker_of_its_own(
        stack, tmp_path, "broker", items_everywhere=shared, sync_interval_s=1.0 if shared else 0.0
    )
    client = redis.Redis.from_url(settings.redis_url, decode_responses=True)
    try:
        local.down(only="broker")
        time.sleep(5)
        local.up()  # back, empty: the topics are made again
        after = ratings[50_000:51_000]  # users whose lists the worker has not written yet
        replay(after, settings, progress=False)
        users = {json.loads(r.payload())["user"] for r in after}
        wait_for(lambda: all(rec_list(client, settings, u) for u in users), timeout=120)
        assert worker.poll() is None
    finally:
        worker.send_signal(signal.SIGTERM)
        code = worker.wait(timeout=30)
        local.down()
    assert code == 0, f"worker exited {code}; see {log}"


@pytest.mark.skipif(not DATASET.exists(), reason="MovieLens-100K not found")
def test_a_worker_stopped_while_the_broker_is_away_keeps_what_it_learned(stack, tmp_path):
    """SIGTERM while the broker is away: the final snapshot is written first (it holds every
    event learned), whatever Faust's own stop then does without a broker (it waits on the
    group coordinator; the watchdog ends it, exit 1: not a clean stop)."""
    settings, local, _, worker, log = _learning_on_a_broker_of_its_own(stack, tmp_path, "away")
    try:
        local.down(only="broker")
        worker.send_signal(signal.SIGTERM)
        code = worker.wait(timeout=30)
    finally:
        if worker.poll() is None:
            worker.kill()
        local.down()
    found = snapshot.load_latest(settings.snapshot_path, settings)
    assert found is not None, f"no snapshot at stop; see {log} (exit {code})"
    engine, saved = found
    assert engine.events == 1682 + 2000
    assert sum(saved.offsets[settings.topic_clicks].values()) == 2000


def _learning_on_a_broker_of_its_own(
    stack, tmp_path, name: str, **overrides
) -> tuple[Settings, LocalStack, list, subprocess.Popen[bytes], Path]:
    """A stack of its own (a broker to stop), MovieLens' items and first 2,000 ratings, and
    a worker that has learned them: (settings, the stack, the ratings, the worker, its log)."""
    settings = dataclasses.replace(
        stack.isolated(f"{name}-{uuid.uuid4().hex[:8]}"),
        broker=f"127.0.0.1:{free_port()}",
        redis_url=f"redis://127.0.0.1:{free_port()}/0",
        state_dir=str(tmp_path),
        log_interval_s=1.0,
        **overrides,
    )
    local = LocalStack(settings)
    local.up()
    items, ratings = movielens()
    replay(items + ratings[:2000], settings, progress=False)
    log = tmp_path / "worker.log"
    worker = start_worker(settings, log)
    client = redis.Redis.from_url(settings.redis_url, decode_responses=True)
    try:
        wait_for(lambda: progress(client, settings)["events"] >= len(items) + 2000, timeout=90)
    except BaseException:
        worker.kill()
        local.down()
        raise
    return settings, local, ratings, worker, log
