"""End to end: kafka-python producers -> Tansu -> `streamrec worker` -> Redis."""

from __future__ import annotations

import json
import time
from collections import defaultdict
from typing import Any, NamedTuple

import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from streamer.client import get_recommendations
from streamer.replay import open_log
from streamer.replay.producer import replay
from streamer.stack import LocalStack

from .conftest import DATASET, progress, rec_list, wait_for

pytestmark = pytest.mark.e2e
N_RATINGS = 6000
CATALOGUE = 1682


class Replayed(NamedTuple):
    settings: Any
    client: Any
    rated: dict[str, set[str]]
    catalogue: set[str]
    last_ts: dict[str, float]  # each user's last event in the replay
    started: float  # when the replay began (wall clock)

    def __iter__(self) -> Any:  # tests unpack the first four
        return iter((self.settings, self.client, self.rated, self.catalogue))


@pytest.fixture(scope="module")
def replayed(worker):
    """MovieLens-100K: the catalogue and the first ratings in time order."""
    if not DATASET.exists():
        pytest.skip(f"MovieLens-100K not found at {DATASET}")
    settings, client, _ = worker
    records = list(open_log(DATASET))[: CATALOGUE + N_RATINGS]
    started = time.time()
    summary = replay(records, settings, progress=False)
    assert summary.sent["clicks"] == N_RATINGS and summary.sent["items"] == CATALOGUE
    wait_for(lambda: progress(client, settings)["events"] >= summary.total, timeout=240)
    rated = defaultdict(set)
    last_ts: dict[str, float] = {}
    for record in records:
        if record.kind == "clicks":
            rated[record.key].add(record.value["item"])
            last_ts[record.key] = float(record.value["ts"])  # the log is in time order
    catalogue = {r.key for r in records if r.kind == "items"}
    return Replayed(settings, client, rated, catalogue, last_ts, started)


def send(settings, topic, key, value):
    producer = KafkaProducer(bootstrap_servers=settings.broker)
    payload = value if isinstance(value, bytes) else json.dumps(value).encode()
    producer.send(topic, key=key.encode(), value=payload)
    producer.flush()
    producer.close()


def test_stack_up_is_idempotent(stack):
    local = LocalStack(stack)
    local.up()  # already running: starts nothing, fails nothing
    status = local.status()
    assert status["broker"]["reachable"] and status["redis"]["reachable"]


def test_every_replayed_user_has_a_list_of_catalogue_items_for_their_last_event(replayed):
    settings, client, rated, catalogue = replayed
    assert progress(client, settings)["rejected"] == 0
    for user, items in rated.items():
        rec = rec_list(client, settings, user)
        assert rec is not None, f"no list for user {user}"
        listed = [entry["item"] for entry in rec["items"]]
        # a list published while the items agent was still behind may be shorter than top_k
        assert 0 < len(listed) <= settings.top_k and len(set(listed)) == len(listed)
        assert set(listed) <= catalogue
        again = {e["item"] for e in rec["items"] if e["item"] in items}
        placed = {e["strategy"] for e in rec["items"] if e["item"] in again}
        assert placed <= {"recent"}, f"user {user}: rated items listed by {placed}"
        assert rec["source"] == "model" and rec["model_version"] > 0
        assert rec["rec_id"].startswith(f"{user}:")
        # the list answers the user's last event, and was written during this replay
        assert rec["event_ts"] == replayed.last_ts[user]
        assert replayed.started <= rec["published_ts"] <= time.time()


def test_a_context_event_changes_the_users_list(replayed):
    settings, client, rated, _ = replayed
    user = max(rated, key=lambda u: len(rated[u]))
    lists = []
    for context in ({"device": "tv", "hour": 21}, {"device": "mobile", "hour": 7}):
        before = rec_list(client, settings, user)["published_ts"]
        send(settings, settings.topic_contexts, user, {"user": user, "context": context})
        rec = wait_for(lambda since=before: _newer(rec_list(client, settings, user), since))
        assert rec["context"]["device"] == context["device"]
        lists.append([entry["item"] for entry in rec["items"]])
    assert lists[0] != lists[1]


def _newer(rec, since):
    return rec if rec and rec["published_ts"] > since else None


def test_a_new_users_click_produces_a_list_within_seconds(replayed):
    settings, client, _, catalogue = replayed
    click = {"user": "newcomer", "item": "50", "type": "click", "context": {"device": "tv"}}
    send(settings, settings.topic_clicks, "newcomer", click)
    rec = wait_for(lambda: rec_list(client, settings, "newcomer"), timeout=15)
    listed = {entry["item"] for entry in rec["items"]}
    assert listed and listed <= catalogue and "50" not in listed
    result = get_recommendations(client, "newcomer", k=3, prefix=settings.redis_prefix)
    assert len(result["items"]) == 3


def test_an_unseen_user_reads_the_popular_list(replayed):
    """Popular lists go out with a batch every pop_publish_s, and from the report timer when
    the stream went quiet since (every log_interval_s): the replay's, within seconds."""
    settings, client, _, catalogue = replayed

    def popular() -> list[Any]:
        raw = client.get(f"{settings.redis_prefix}pop")
        return json.loads(raw)["items"] if raw else []

    wait_for(lambda: len(popular()) >= 5, timeout=3 * settings.log_interval_s)
    result = get_recommendations(
        client, "nobody-yet", k=5, prefix=settings.redis_prefix, context={"device": "smartwatch"}
    )
    assert result["source"] in {"popular-context", "popular-overall"}
    assert len(result["items"]) == 5 and {e["item"] for e in result["items"]} <= catalogue


def test_malformed_events_are_dead_lettered_and_the_worker_goes_on(replayed):
    settings, client, _, _ = replayed
    rejected = progress(client, settings)["rejected"]
    send(settings, settings.topic_clicks, "x", b"\x00 this is not json")
    send(settings, settings.topic_clicks, "x", {"user": "x", "item": "1", "type": "teleport"})
    send(settings, settings.topic_clicks, "after-garbage", {"user": "after-garbage", "item": "1"})
    wait_for(lambda: rec_list(client, settings, "after-garbage"), timeout=15)
    wait_for(lambda: progress(client, settings)["rejected"] >= rejected + 2, timeout=15)

    consumer = KafkaConsumer(
        bootstrap_servers=settings.broker, consumer_timeout_ms=2000, auto_offset_reset="earliest"
    )
    partitions = [
        TopicPartition(settings.topic_dead_letters, p) for p in range(settings.partitions)
    ]
    consumer.assign(partitions)
    consumer.seek_to_beginning(*partitions)
    letters = []
    deadline = time.monotonic() + 20
    while len(letters) < 2 and time.monotonic() < deadline:
        letters += [json.loads(m.value) for m in consumer]
    consumer.close()
    reasons = sorted(letter["reason"] for letter in letters)
    assert len(letters) == 2, letters
    assert reasons[0].startswith("not JSON") and "unknown event type 'teleport'" in reasons[1]
    assert all(letter["topic"] == settings.topic_clicks for letter in letters)


def test_prequential_metrics_are_published(replayed):
    settings, client, _, _ = replayed
    metrics = wait_for(lambda: client.get(f"{settings.redis_prefix}metrics"), timeout=15)
    metrics = json.loads(metrics)
    assert metrics["ratings"] >= N_RATINGS and 0.5 < metrics["rmse"] < 1.5
    positives = sum(
        1 for r in open_log(DATASET) if r.kind == "clicks" and r.value.get("value", 0) >= 4
    )
    assert 0 < metrics["positives"] <= positives  # the whole log's bound the replay's
    # every positive was scored: the hits are a whole number, and more than chance finds.
    # A positive is scored against the list from before its micro-batch, so the figure falls
    # as batches grow (a replay read as fast as it is sent: up to 1,000 events): over these
    # 6,000 ratings in process, 0.153 in batches of 1, 0.072 of 100, 0.064 of 1,000, and one
    # CI run's worker 0.0586. Lists drawn at random would find k / CATALOGUE (0.006).
    hits = metrics["hit_rate"] * metrics["positives"]
    assert abs(hits - round(hits)) < 1e-3 * metrics["positives"]
    assert metrics["hit_rate"] > 5 * metrics["k"] / CATALOGUE
    # the Gini of exposure counts never-listed items: at least their share of the catalogue
    assert 0.0 < metrics["coverage"] < 1.0
    assert 1.0 - metrics["coverage"] - 1.0 / CATALOGUE <= metrics["gini"] < 1.0


def test_a_new_item_from_the_items_topic_reaches_fans_of_its_genre(replayed):
    """Cold start through the real worker: no one has touched the item, its tags place it."""
    settings, client, _, _ = replayed
    noir = [item for item, genres in _genres().items() if "Film-Noir" in genres]
    producer = KafkaProducer(bootstrap_servers=settings.broker)
    fans = [f"noir-fan-{n}" for n in range(9)]
    start = progress(client, settings)["events"]
    for fan in fans:  # each fan chooses each noir film once (no re-consumption to learn)
        for item in noir:
            click = {"user": fan, "item": item, "type": "click", "context": {"device": "tv"}}
            producer.send(settings.topic_clicks, key=fan.encode(), value=json.dumps(click).encode())
    producer.flush()
    # the new item only once the fans' clicks are learned: clicks and items are separate
    # topics, consumed in no fixed order between them. An item learned before those clicks is
    # proposed by `fresh`, unchosen, at each of its ~200 positives, past the 100 during which
    # the policy keeps a new source's first candidate: the likely cause of one CI run where
    # no fan got it
    wait_for(lambda: progress(client, settings)["events"] >= start + len(fans) * len(noir))
    new = {"item": "noir-new", "title": "The Long Shadow", "tags": ["Film-Noir"]}
    producer.send(settings.topic_items, key=b"noir-new", value=json.dumps(new).encode())
    producer.flush()
    expected = start + len(fans) * len(noir) + 1
    wait_for(lambda: progress(client, settings)["events"] >= expected, timeout=60)
    found = 0
    for fan in fans:
        before = rec_list(client, settings, fan)["published_ts"]
        send(settings, settings.topic_contexts, fan, {"user": fan, "context": {"device": "tv"}})
        rec = wait_for(lambda since=before, fan=fan: _newer(rec_list(client, settings, fan), since))
        found += "noir-new" in [entry["item"] for entry in rec["items"]]
    assert found == len(fans)


def _genres() -> dict[str, list[str]]:
    return {r.key: r.value["tags"] for r in open_log(DATASET) if r.kind == "items"}
