"""A/B arms on a real worker: lists served by each user's arm, clicks credited to the arm that
served them, per-arm figures in /metrics and /api/summary, and both arms back after a restart."""

from __future__ import annotations

import dataclasses
import json
import signal
import uuid
from pathlib import Path

import pytest
import redis

from streamer.evaluation.ab import arm_of
from streamer.replay.producer import replay
from streamer.replay.record import LogRecord

from .conftest import (
    CHROMIUM,
    create_topics,
    free_port,
    http_get,
    launch_chromium,
    metric_samples,
    movielens,
    progress,
    rec_list,
    start_worker,
    wait_for,
)

pytestmark = pytest.mark.e2e

RATINGS = 2000
CLICKED = 5  # users per arm who click an item of the list they were served


def _summary(base: str) -> dict:
    return json.loads(http_get(base + "/api/summary")[1])


def _stop(process) -> None:
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=60) == 0


def test_each_arm_serves_its_users_and_is_credited_with_their_clicks(stack):
    uid = uuid.uuid4().hex[:8]
    settings = dataclasses.replace(
        stack.isolated(f"ab-{uid}"),
        web_port=free_port(),
        log_interval_s=2.0,
        ab="knn_last=5,knn_decay=1",
        ab_share=0.4,
    )
    create_topics(settings.broker, settings.topics, settings.partitions)
    log = Path(settings.state_dir) / f"worker-ab-{uid}.log"
    base = f"http://127.0.0.1:{settings.web_port}"
    client = redis.Redis.from_url(settings.redis_url, decode_responses=True)
    items, ratings = movielens(RATINGS)
    process = start_worker(settings, log)
    try:
        replay(items + ratings, settings, progress=False)
        total = len(items) + len(ratings)
        wait_for(lambda: progress(client, settings)["events"] >= total, timeout=120)
        users = sorted({json.loads(r.payload())["user"] for r in ratings})
        lists = {u: rec_list(client, settings, u) for u in users}
        for user, served in lists.items():
            assert served is not None, user
            arm = arm_of(user, settings.ab_share)
            assert served["arm"] == arm and served["rec_id"].startswith(f"{arm}/"), served
        # clicks on the lists as served, carrying their rec_id: each credited to its arm
        clicks = []
        for arm in ("a", "b"):
            mine = [u for u in users if lists[u]["arm"] == arm][:CLICKED]
            assert len(mine) == CLICKED
            for user in mine:
                value = {
                    "user": user,
                    "item": lists[user]["items"][0]["item"],
                    "type": "click",
                    "ts": 2e9,
                    "rec_id": lists[user]["rec_id"],
                }
                clicks.append(LogRecord("clicks", user, value, 2e9))
        replay(clicks, settings, progress=False)
        wait_for(lambda: progress(client, settings)["events"] >= total + len(clicks), timeout=60)
        found = wait_for(
            lambda: (
                (m := metric_samples(http_get(base + "/metrics")[1].decode()))
                and m.get(("streamrec_ab_clicks_credited_total", (("arm", "b"),))) == CLICKED
                and m
            ),
            timeout=30,
        )
        for arm in ("a", "b"):
            assert found["streamrec_ab_clicks_credited_total", (("arm", arm),)] == CLICKED
        lists_by_arm = [found["streamrec_ab_lists_total", (("arm", arm),)] for arm in "ab"]
        assert sum(lists_by_arm) == found["streamrec_lists_written_total", ()]
        assert 0.25 < lists_by_arm[1] / sum(lists_by_arm) < 0.55  # about the share asked
        before = _summary(base)["worker"]["ab"]
        assert before["changes"] == {"knn_last": 5, "knn_decay": 1.0}
        for arm in ("a", "b"):
            figures = before["arms"][arm]
            assert figures["users"] > 0 and figures["stale_clicks"] == 0
            low, high = figures["hit_rate_ci95"]
            assert low <= figures["hit_rate"] <= high
        if CHROMIUM:  # the dashboard shows the arms as /metrics counts them
            from playwright.sync_api import sync_playwright

            with sync_playwright() as p:
                browser = launch_chromium(p)
                page = browser.new_page()
                page.goto(base + "/dashboard")
                page.wait_for_selector("#ab tr:nth-child(3)")
                cells = [page.inner_text(f"#ab tr:nth-child({n}) td:nth-child(3)") for n in (2, 3)]
                assert [float(c) for c in cells] == lists_by_arm
                browser.close()
        _stop(process)  # SIGTERM: a final snapshot of both arms
        process = start_worker(settings, log)
        # what the set-up logged (before Faust's logging was up) is logged once it runs
        wait_for(lambda: "arm b resumes from snapshot" in log.read_text(), timeout=60)
        wait_for(lambda: http_get(base + "/health")[0] == 200, timeout=60, interval=0.5)
        after = _summary(base)["worker"]["ab"]
        for arm in ("a", "b"):  # each arm's figures came back with its engine
            assert after["arms"][arm]["users"] == before["arms"][arm]["users"]
            assert after["arms"][arm]["hit_rate"] == pytest.approx(before["arms"][arm]["hit_rate"])
    finally:
        if process.poll() is None:
            _stop(process)
