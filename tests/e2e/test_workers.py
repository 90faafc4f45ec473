"""Two workers in one consumer group: each knows every item; clicks are split, none twice; what
each learns of items reaches the other (``streamer.sync``)."""

from __future__ import annotations

import dataclasses
import json
import math
import signal
import subprocess
import threading
import time
import urllib.request
import uuid
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from streamer import snapshot
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


def _two_workers(
    settings, name: str, ports: list[int] | None = None
) -> tuple[list[subprocess.Popen[bytes]], list[str]]:
    """Two worker processes in one group on fresh topics (web servers on ``ports``, free ones
    by default), once each has its partitions; their processes and web addresses."""
    create_topics(settings.broker, settings.topics, settings.partitions)
    workers, bases = [], []
    ports = ports or [free_port(), free_port()]
    try:
        for n in range(2):
            mine = dataclasses.replace(settings, web_port=ports[n])
            log = Path(settings.state_dir) / f"worker-{name}-{n}.log"
            workers.append(start_worker(mine, log))
            bases.append(f"http://127.0.0.1:{mine.web_port}")
        for base in bases:  # both in the group, each with its share of the partitions
            wait_for(lambda base=base: _up(base), timeout=90, interval=0.5)
    except BaseException:
        _stop(workers)
        raise
    return workers, bases


def _stop(workers: list[subprocess.Popen[bytes]]) -> None:
    """SIGTERM to the workers still running; killed if they do not stop within 30 s."""
    for process in workers:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
    for process in workers:
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()


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
    workers, bases = [], []
    try:
        workers, bases = _two_workers(settings, f"two-{uid}")
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
        _stop(workers)


def test_a_stopped_workers_users_move_to_the_survivor_with_their_state(stack):
    """Two sharing workers; one is stopped mid-stream (SIGTERM): the survivor takes its
    partitions over with its users' state (none of them falls back to the popular list), and
    resumes each where the stopped worker's learning ended (every click learned once)."""
    uid = uuid.uuid4().hex[:8]
    settings = dataclasses.replace(
        stack.isolated(f"handover-{uid}"), log_interval_s=1.0, sync_interval_s=0.5
    )
    workers, bases = [], []
    ports = [free_port(), free_port()]
    try:
        workers, bases = _two_workers(settings, f"handover-{uid}", ports)
        items, ratings = movielens(RATINGS)
        replay(items + ratings[: RATINGS // 2], settings, progress=False)
        half = RATINGS // 2
        wait_for(lambda: sum(_learned(b, "clicks") for b in bases) >= half, timeout=120)
        users = {json.loads(r.payload())["user"] for r in ratings[:half]}
        theirs = {u for u in users if _json(f"{bases[0]}/api/user/{u}")["history"]}
        assert theirs  # the users whose lists worker 0 wrote
        # the rest arrives while worker 0 stops: batches come after its hand-over
        paced = {"rate": 250.0, "progress": False}
        rest = threading.Thread(target=replay, args=(ratings[half:], settings), kwargs=paced)
        rest.start()
        time.sleep(1.5)
        workers[0].send_signal(signal.SIGTERM)
        try:
            assert workers[0].wait(timeout=30) == 0
        finally:
            rest.join()
        # per partition: resumed exactly where the stopped worker's learning ended (its
        # snapshot at stop holds its final positions)
        stopped = dataclasses.replace(settings, web_port=ports[0])
        final = snapshot.load_latest(stopped.snapshot_path, stopped)
        assert final is not None
        clicks = settings.topic_clicks
        wait_for(lambda: _json(bases[1] + "/api/summary")["worker"]["sync"]["handed_over"], 60)
        handed = _json(bases[1] + "/api/summary")["worker"]["sync"]["handed_over"]
        assert sum(h["users"] for h in handed.values()) >= len(theirs)
        for partition, taken in handed.items():
            assert taken["offsets"][clicks] == final[1].offsets[clicks][int(partition)]
        # what worker 0 learned of its partitions and the survivor of the rest: each click once
        first = sum(final[1].offsets[clicks][int(partition)] for partition in handed)
        wait_for(lambda: first + _learned(bases[1], "clicks") >= RATINGS, timeout=120)
        time.sleep(2)  # nothing more comes: every click learned once, none twice
        assert first + _learned(bases[1], "clicks") == RATINGS
        for user in theirs:  # the survivor holds their history and their id's rows already
            state = _json(f"{bases[1]}/api/user/{user}")["state"]
            assert state["items"] > 0 and state["known"], (user, state)
        # the stopped worker's users, back with one more rating each: a list from the model
        # that knows them (their id's rows and history came over), not the popular one
        _back_with_lists_from_the_model(settings, bases[1], ratings[:half], theirs)
    finally:
        _stop(workers)


@pytest.mark.chaos
def test_a_killed_workers_partitions_resume_at_its_last_publication(stack):
    """Two sharing workers; one is killed (SIGKILL) mid-stream: the survivor takes its
    partitions over from its last publication (at most a sync interval back), learns the
    events since again, loses none, and knows the killed worker's users."""
    uid = uuid.uuid4().hex[:8]
    settings = dataclasses.replace(
        stack.isolated(f"killed-{uid}"), log_interval_s=1.0, sync_interval_s=0.5
    )
    workers: list[subprocess.Popen[bytes]] = []
    try:
        workers, bases = _two_workers(settings, f"killed-{uid}")
        items, ratings = movielens(RATINGS)
        half = RATINGS // 2
        replay(items + ratings[:half], settings, progress=False)
        wait_for(lambda: sum(_learned(b, "clicks") for b in bases) >= half, timeout=120)
        users = {json.loads(r.payload())["user"] for r in ratings[:half]}
        theirs = {u for u in users if _json(f"{bases[0]}/api/user/{u}")["history"]}
        first = _learned(bases[0], "clicks")
        time.sleep(1.5)  # a publication or more after its last batch
        workers[0].kill()
        workers[0].wait(timeout=30)
        replay(ratings[half:], settings, progress=False)
        positions = f"{bases[1]}/metrics"

        def learned_to_the_end() -> bool:
            ends = _positions(positions, settings.topic_clicks)
            return len(ends) == settings.partitions and sum(ends.values()) == RATINGS

        wait_for(learned_to_the_end, timeout=120, interval=0.5)  # none lost
        again = first + _learned(bases[1], "clicks") - RATINGS
        assert 0 <= again < half  # learned again: what came after its last publication
        for user in theirs:
            state = _json(f"{bases[1]}/api/user/{user}")["state"]
            assert state["items"] > 0 and state["known"], (user, state)
    finally:
        _stop(workers)


def _positions(metrics_url: str, topic: str) -> dict[int, float]:
    """A worker's positions in ``topic``, by partition (``/metrics``)."""
    with urllib.request.urlopen(metrics_url, timeout=5) as response:
        text = response.read().decode()
    return {
        int(sample.labels["partition"]): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "streamrec_consumer_position" and sample.labels["topic"] == topic
    }


def _back_with_lists_from_the_model(
    settings, base: str, earlier: list[LogRecord], users: set[str]
) -> None:
    """``users`` (the stopped worker's), back with one more rating each: their new lists come
    from the model, which knows them (their id's rows and history came over), not from the
    popular list."""
    again: dict[str, dict] = {}
    for event in (json.loads(r.payload()) for r in earlier):
        if event["user"] in users and event["user"] not in again:
            again[event["user"]] = {**event, "ts": event["ts"] + 1.0}
    chosen = list(again.items())[:20]
    sent = time.time()
    replay([LogRecord("clicks", u, e, e["ts"]) for u, e in chosen], settings, progress=False)
    for user, _ in chosen:
        looked = wait_for(
            lambda user=user: (
                (r := _json(f"{base}/api/user/{user}"))["list"]
                and r["list"].get("published_ts", 0) > sent
                and r
            ),
            timeout=30,
        )
        assert looked["list"]["source"] == "model", (user, looked["list"])
