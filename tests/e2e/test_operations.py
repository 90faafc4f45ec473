"""What an operator sees of a real worker: Prometheus metrics that count what was sent, health
and readiness probes, and the live dashboard in a real (headless) browser."""

from __future__ import annotations

import dataclasses
import json
import signal
import subprocess
import uuid
from pathlib import Path

import pytest
import redis
from kafka import KafkaProducer

from streamer.replay.producer import replay

from .conftest import (
    CHROMIUM,
    create_topics,
    free_port,
    http_get,
    launch_chromium,
    metric_samples,
    movielens,
    progress,
    start_worker,
    wait_for,
)

pytestmark = pytest.mark.e2e

RATINGS = 3000
BAD = 200


@pytest.fixture(scope="module")
def served(stack, tmp_path_factory):
    """A worker with its web server on a free port, fed MovieLens' items, its first ratings
    and malformed messages; yields its settings, base URL and what was sent."""
    uid = uuid.uuid4().hex[:8]
    settings = dataclasses.replace(
        stack.isolated(f"ops-{uid}"), web_port=free_port(), log_interval_s=2.0
    )
    create_topics(settings.broker, settings.topics, settings.partitions)
    log = Path(settings.state_dir) / f"worker-ops-{uid}.log"
    process = start_worker(settings, log)
    base = f"http://127.0.0.1:{settings.web_port}"
    try:
        wait_for(lambda: http_get(base + "/health")[0] == 200, timeout=60, interval=0.5)
        items, ratings = movielens(RATINGS)
        replay(items + ratings, settings, progress=False)
        producer = KafkaProducer(bootstrap_servers=settings.broker)
        for n in range(BAD):
            producer.send(settings.topic_clicks, key=b"x", value=b'{"user": ' + str(n).encode())
        producer.flush()
        producer.close()
        sent = {"items": len(items), "clicks": len(ratings), "bad": BAD}
        client = redis.Redis.from_url(settings.redis_url, decode_responses=True)
        total = len(items) + len(ratings) + BAD
        wait_for(lambda: progress(client, settings)["events"] >= total, timeout=120)
        yield settings, base, sent, ratings, tmp_path_factory.mktemp("browser")
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()


def test_metrics_count_exactly_what_was_sent(served):
    settings, base, sent, ratings, _ = served
    status, body = http_get(base + "/metrics")
    assert status == 200
    found = metric_samples(body.decode())

    def events(topic: str, outcome: str) -> float:
        return found.get(("streamrec_events_total", (("outcome", outcome), ("topic", topic))), 0)

    assert events("clicks", "learned") == sent["clicks"]
    assert events("clicks", "rejected") == sent["bad"]
    assert events("items", "learned") == sent["items"]
    assert events("clicks", "failed") == 0
    assert found["streamrec_dead_letters_total", ()] == sent["bad"]
    assert found["streamrec_catalogue_items", ()] == sent["items"]
    # every message's offset is the model's position: positions sum to what each topic holds
    positions = {
        labels: value
        for (name, labels), value in found.items()
        if name == "streamrec_consumer_position"
    }
    by_topic: dict[str, float] = {}
    for labels, value in positions.items():
        topic = dict(labels)["topic"]
        by_topic[topic] = by_topic.get(topic, 0) + value
    assert by_topic[settings.topic_clicks] == sent["clicks"] + sent["bad"]
    assert by_topic[settings.topic_items] == sent["items"]
    users = {json.loads(r.payload())["user"] for r in ratings}
    assert found["streamrec_lists_written_total", ()] >= len(users)  # each user's, at least
    assert found["streamrec_freshness_seconds_count", ()] > 0
    assert 0 < found["streamrec_prequential_hit_rate", ()] < 1
    assert found["streamrec_rebalances_total", ()] >= 1
    assert found["streamrec_seconds_since_last_batch", ()] < 60  # it is taking batches
    batches = sum(v for (n, _), v in found.items() if n == "streamrec_batches_total")
    timed = sum(v for (n, _), v in found.items() if n == "streamrec_batch_seconds_count")
    learned = sum(v for (n, _), v in found.items() if n == "streamrec_learn_seconds_count")
    assert batches == timed == learned > 0

    # Faust's own commits catch up with the model's positions (it commits every few seconds)
    def committed_clicks() -> float:
        scraped = metric_samples(http_get(base + "/metrics")[1].decode())
        return sum(
            v
            for (n, labels), v in scraped.items()
            if n == "streamrec_consumer_committed_offset"
            and dict(labels)["topic"] == settings.topic_clicks
        )

    wait_for(lambda: committed_clicks() == sent["clicks"] + sent["bad"], timeout=30)


def test_health_and_readiness_answer_for_the_orchestrator(served):
    settings, base, _, _, _ = served
    status, body = http_get(base + "/health")
    assert status == 200 and json.loads(body)["ok"] is True
    status, body = wait_for(lambda: (r := http_get(base + "/ready"))[0] == 200 and r, timeout=30)
    ready = json.loads(body)
    assert ready["partitions"] > 0 and ready["redis"] is True and ready["lag"] <= ready["max_lag"]
    # what a stall's log line shows: Faust's and aiokafka's flow state, read from their
    # internals (an upgrade that moves them fails here, not silently at a stall)
    flow = json.loads(http_get(base + "/api/flow")[1])
    assert "error" not in flow and flow["flow_active"] is True
    assert flow["assigned"] and set(flow["positions"]) == set(flow["assigned"])
    agents = {"streamrec.clicks", "streamrec.contexts"}  # items: read by every worker's feed
    assert set(flow["buffers"]) == agents | (
        set() if settings.items_everywhere else {"streamrec.items"}
    )


def test_the_api_behind_the_dashboard(served):
    _, base, sent, ratings, _ = served
    status, body = http_get(base + "/api/summary")
    summary = json.loads(body)
    assert status == 200 and summary["worker"]["catalogue"] == sent["items"]
    assert summary["lorenz"][0] == [0.0, 0.0] and summary["lorenz"][-1] == [1.0, 1.0]
    user = json.loads(ratings[-1].payload())["user"]
    looked_up = json.loads(http_get(f"{base}/api/user/{user}")[1])
    assert looked_up["list"]["source"] in ("model", "popular") and looked_up["list"]["items"]
    assert looked_up["history"], "the lists of the user's last events"


@pytest.mark.skipif(CHROMIUM is None, reason="needs Debian's chromium (make test installs it)")
def test_the_dashboard_in_a_real_browser(served):
    from playwright.sync_api import sync_playwright

    settings, base, sent, ratings, out = served
    user = json.loads(ratings[-1].payload())["user"]
    with sync_playwright() as p:
        browser = launch_chromium(p)
        page = browser.new_page(viewport={"width": 1400, "height": 1100})
        page.goto(base + "/dashboard")
        page.wait_for_function("document.getElementById('status').textContent === 'live'")
        assert page.inner_text("#catalogue") == str(sent["items"])
        assert not page.is_visible("#ab-section")  # no arms here
        first = int(page.inner_text("#events"))
        assert first >= sent["items"] + sent["clicks"] + sent["bad"]
        page.fill("#user-input", user)
        page.click("#user-form button")
        page.wait_for_selector("#user-list tr:nth-child(2)")
        rows = page.locator("#user-list tr").count() - 1
        listed = json.loads(http_get(f"{base}/api/user/{user}")[1])["list"]["items"]
        assert (
            rows == len(listed)
            and page.inner_text("#user-list tr:nth-child(2) td:nth-child(2)") == listed[0]["item"]
        )
        # the figures move as events flow: more events, and the page follows
        _, more = movielens(RATINGS + 500)
        replay(more[RATINGS:], settings, progress=False)
        page.wait_for_function(
            f"parseInt(document.getElementById('events').textContent) >= {first + 500}",
            timeout=60_000,
        )
        shot = out / "dashboard.png"
        page.screenshot(path=str(shot), full_page=True)
        browser.close()
    assert shot.stat().st_size > 10_000
    print(f"screenshot: {shot}")
