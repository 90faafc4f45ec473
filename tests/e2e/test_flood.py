"""A flood of 10,000 malformed messages of every kind, mixed with good events: the worker keeps
going, every bad message is in `dead-letters` with its reason, every good event is learned."""

from __future__ import annotations

import itertools
import json
import random
import time

import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from streamer.replay.producer import replay

from .conftest import movielens, progress, rec_list, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.chaos]

BAD = 10_000
GOOD = 1_000


def poison(n: int, rng: random.Random) -> bytes:
    """The ``n``-th malformed message: a dozen kinds, the poison classes of issue 11 included."""
    kinds = [
        lambda: bytes(rng.getrandbits(8) for _ in range(rng.randint(1, 64))),  # not UTF-8
        lambda: b'{"user": "u", "item": ',  # truncated JSON
        lambda: b"[1, 2, 3]",  # not an object
        lambda: b'{"item": "1"}',  # no user
        lambda: json.dumps({"user": {"a": 1}, "item": "1"}).encode(),  # wrong type
        lambda: json.dumps({"user": "u", "item": "1", "type": "teleport"}).encode(),
        lambda: b'{"user": "u", "item": "1", "type": "rating", "value": ' + b"9" * 5000 + b"}",
        lambda: b'{"user": "u", "item": "1", "type": "rating", "value": 1e400}',
        lambda: b'{"user": "\\ud800", "item": "1"}',  # a lone surrogate in an id
        lambda: b'{"user": "u", "item": "1", "context": {"device": "\\udc80"}}',
        lambda: json.dumps({"user": "u", "item": "1", "type": "rating", "value": 99}).encode(),
        lambda: json.dumps({"user": "u", "item": "1", "ts": 10**30}).encode(),
    ]
    if n % 2000 == 0:  # invalid and oversized: its dead letter must stay under 1 MB
        return b'{"user": "u", "item": "1", "type": "teleport", "pad": "' + b"x" * 900_000 + b'"}'
    return kinds[n % len(kinds)]()


def test_a_flood_of_malformed_messages_costs_nothing_good(worker):
    settings, client, process = worker
    items, good = movielens(GOOD)
    replay(items, settings, progress=False)
    wait_for(lambda: progress(client, settings)["events"] >= len(items), timeout=60)
    start = progress(client, settings)

    rng = random.Random(7)
    bad = [poison(n, rng) for n in range(BAD)]
    messages = [(r.key.encode(), r.payload()) for r in good] + [(b"x", b) for b in bad]
    rng.shuffle(messages)
    producer = KafkaProducer(bootstrap_servers=settings.broker, max_request_size=1_048_576)
    began = time.monotonic()
    for key, value in messages:
        producer.send(settings.topic_clicks, key=key, value=value)
    producer.flush()
    producer.close()
    total = start["events"] + len(messages)
    wait_for(lambda: progress(client, settings)["events"] >= total, timeout=180)
    seconds = time.monotonic() - began
    done = progress(client, settings)
    assert process.poll() is None, "the worker died in the flood"
    assert done["events"] == total and done["rejected"] - start["rejected"] == BAD

    consumer = KafkaConsumer(
        bootstrap_servers=settings.broker, consumer_timeout_ms=3000, auto_offset_reset="earliest"
    )
    parts = [TopicPartition(settings.topic_dead_letters, p) for p in range(settings.partitions)]
    consumer.assign(parts)
    consumer.seek_to_beginning(*parts)
    letters: list[dict] = []
    deadline = time.monotonic() + 60
    while len(letters) < BAD and time.monotonic() < deadline:
        letters += [json.loads(m.value) for m in consumer]
    consumer.close()
    flood = [d for d in letters if d["topic"] == settings.topic_clicks]
    assert len(flood) == BAD and all(d["reason"] for d in flood)
    assert max(d["raw_size"] for d in flood) >= 900_000  # the oversized ones, kept in part
    users = {json.loads(r.payload())["user"] for r in good}
    assert all(rec_list(client, settings, u) for u in itertools.islice(sorted(users), 50))
    reasons = {d["reason"].split(":")[0].split(" (")[0] for d in flood}
    print(
        f"{len(messages):,} messages ({BAD:,} malformed) in {seconds:.1f} s: "
        f"{len(messages) / seconds:,.0f} events/s; {len(reasons)} kinds of reason"
    )
