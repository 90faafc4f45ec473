"""Redis gone for a while: the worker neither dies nor stalls; once Redis is back it writes the
latest list of every user it touched meanwhile."""

from __future__ import annotations

import dataclasses
import json
import signal
import time
import uuid

import pytest
import redis

from streamer.replay.producer import replay
from streamer.stack import LocalStack, create_topics
from tests.e2e.conftest import DATASET, free_port, movielens, progress, start_worker, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.chaos]


@pytest.mark.skipif(not DATASET.exists(), reason="MovieLens-100K not found")
def test_a_redis_outage_costs_no_list_and_no_worker(stack, tmp_path):
    uid = uuid.uuid4().hex[:8]
    settings = dataclasses.replace(
        stack.isolated(f"redis-{uid}"),
        redis_url=f"redis://127.0.0.1:{free_port()}/0",  # a Redis of its own, to stop
        state_dir=str(tmp_path),
        log_interval_s=1.0,
    )
    own_redis = LocalStack(settings)  # the broker is the session's: only Redis starts here
    own_redis.up()
    create_topics(settings.broker, settings.topics, settings.partitions)
    items, ratings = movielens()
    before, during = ratings[:3000], ratings[3000:6000]
    replay(items + before, settings, progress=False)
    log = tmp_path / "worker.log"
    worker = start_worker(settings, log)
    client = redis.Redis.from_url(settings.redis_url, decode_responses=True)
    try:
        wait_for(lambda: progress(client, settings)["events"] >= 1682 + 3000, timeout=90)
        own_redis.down()  # Redis gone, the stream goes on
        replay(during, settings, progress=False)
        time.sleep(8)
        assert worker.poll() is None, f"the worker died with Redis; see {log}"
        own_redis.up()  # back, empty (no persistence): what it holds now the worker wrote
        touched = {json.loads(r.payload())["user"] for r in during}
        wait_for(
            lambda: all(client.exists(f"{settings.redis_prefix}rec:{u}") for u in touched),
            timeout=60,
        )
        lists = [json.loads(client.get(f"{settings.redis_prefix}rec:{u}")) for u in touched]
        last_ts = {}
        for r in during:
            payload = json.loads(r.payload())
            last_ts[payload["user"]] = payload["ts"]
        # each is the user's latest list: made after their last event of the outage
        assert all(rec["event_ts"] == last_ts[rec["user"]] for rec in lists)

        def figures() -> dict:
            return json.loads(client.get(f"{settings.redis_prefix}worker") or "{}")

        # the figures of a report after the one that flushed (it counted what was pending)
        wait_for(lambda: figures().get("redis_pending") == 0, timeout=30)
        assert figures()["redis_failed_writes"] > 0
        print(
            f"during the outage: {figures()['redis_failed_writes']} failed writes, "
            f"{len(touched)} users' lists written when Redis came back"
        )
    finally:
        worker.send_signal(signal.SIGTERM)
        code = worker.wait(timeout=30)
        own_redis.down()
    assert code == 0, f"worker exited {code}; see {log}"
