import asyncio
import base64
import json

from streamer.engine import SIMILAR_PER_BATCH
from streamer.pipeline import Pipeline
from streamer.publisher import RedisSink
from streamer.room import EngineRoom
from streamer.settings import Settings

from .conftest import message


def make_pipeline(fake_redis, **overrides):
    dead = []

    async def send(key, value):
        dead.append(json.loads(value))

    settings = Settings(n_factors=4, top_k=3, **overrides)
    return Pipeline(settings, RedisSink(fake_redis, "t:"), send), dead


def test_malformed_events_go_to_dead_letters_and_the_rest_is_processed(fake_redis):
    pipeline, dead = make_pipeline(fake_redis)
    asyncio.run(pipeline.handle("items", [message("items", {"item": "i1", "tags": ["a"]})]))
    clicks = [
        message("clicks", b"\x00garbage", offset=5),
        message("clicks", {"user": "u1", "item": "i1", "type": "rating", "value": 99}),
        message("clicks", {"user": "u2", "item": "i1"}),
    ]
    asyncio.run(pipeline.handle("clicks", clicks))
    asyncio.run(pipeline.handle("contexts", [message("contexts", {"user": "u3"})]))
    reasons = [d["reason"] for d in dead]
    assert len(dead) == 3
    assert reasons[0].startswith("not JSON") and "rating range" in reasons[1]
    assert reasons[2] == "missing 'context'"
    assert dead[0]["topic"] == "clicks" and dead[0]["offset"] == 5
    assert base64.b64decode(dead[0]["raw_base64"]) == b"\x00garbage"
    assert "t:rec:u2" in fake_redis.data and "t:rec:u1" not in fake_redis.data
    assert fake_redis.pipelines == 3  # one Redis round trip per batch
    assert fake_redis.json("t:progress")["rejected"] == 3


def test_a_processing_error_isolates_the_event(fake_redis, monkeypatch):
    pipeline, dead = make_pipeline(fake_redis)
    take = pipeline.engine._take

    def flaky(click, *args):
        if click.user == "bomb":
            raise RuntimeError("boom")
        return take(click, *args)

    monkeypatch.setattr(pipeline.engine, "_take", flaky)
    batch = [message("clicks", {"user": u, "item": "i"}) for u in ("a", "bomb", "b")]
    asyncio.run(pipeline.handle("clicks", batch))
    assert [d["reason"] for d in dead] == ["processing error: RuntimeError: boom"]
    assert {"t:rec:a", "t:rec:b"} <= set(fake_redis.data)
    assert pipeline.stats.errors == 1
    assert pipeline.engine.events == 2  # the others were learned once each, none re-run


def test_similar_items_are_published_and_read_back(fake_redis):
    from streamer.client import get_similar

    pipeline, _ = make_pipeline(fake_redis, pop_publish_s=0.0)
    clicks = [
        message("clicks", {"user": f"u{n}", "item": item})
        for n in range(6)
        for item in (("a", "b") if n % 2 else ("c", "d"))
    ]
    asyncio.run(pipeline.handle("clicks", clicks))
    similar = get_similar(fake_redis, "a", prefix="t:")
    assert [s["item"] for s in similar["items"]] == ["b"]  # co-chosen by the same users
    assert [s["item"] for s in get_similar(fake_redis, "d", prefix="t:")["items"]] == ["c"]
    assert get_similar(fake_redis, "nothing", prefix="t:")["items"] == []


def test_a_due_set_is_shared_by_the_batches_then_left_to_the_timer_once_quiet(
    fake_redis, monkeypatch
):
    """A batch computes one similar-item list per EVENTS_PER_SIMILAR of its events (at least
    SIMILAR_FLOOR), the oldest chosen first; the report timer leaves the rest to the batches
    while they run, and takes them once no batch has ended for QUIET_S."""
    from streamer.engine import EVENTS_PER_SIMILAR, SIMILAR_FLOOR
    from streamer.pipeline import QUIET_S

    clock = [1000.0]
    monkeypatch.setattr("streamer.pipeline.time.time", lambda: clock[0])
    pipeline, _ = make_pipeline(fake_redis, sim_publish_s=3600.0)
    pipeline.stats.clock = lambda: clock[0]  # when batches last ended, on the same clock

    def published() -> list[str]:
        return sorted(k for k in fake_redis.data if k.startswith("t:sim:"))

    chosen = 2 * SIMILAR_FLOOR + 5 * EVENTS_PER_SIMILAR
    clicks = [message("clicks", {"user": f"u{n}", "item": f"i{n:03d}"}) for n in range(chosen)]
    asyncio.run(pipeline.handle("clicks", clicks))  # due: the first batch's
    share = max(SIMILAR_FLOOR, chosen // EVENTS_PER_SIMILAR)
    assert published() == [f"t:sim:i{n:03d}" for n in range(share)]
    assert pipeline.stale_similar() == []  # batches are running: theirs to publish
    asyncio.run(pipeline.handle("clicks", [message("clicks", {"user": "v", "item": "i000"})]))
    assert len(published()) == share + SIMILAR_FLOOR  # the next ones, not due again
    clock[0] += QUIET_S  # no batch since: the timer's
    rest = pipeline.stale_similar()
    assert [s.item for s in rest] == [f"i{n:03d}" for n in range(share + SIMILAR_FLOOR, chosen)]
    assert pipeline.stale_similar() == []


def test_the_read_helper_imports_nothing_heavy():
    import subprocess
    import sys

    code = (
        "import sys, streamer.client; "
        "print([m for m in ('numpy', 'faust', 'faiss', 'river', 'numba', 'redis') "
        "if m in sys.modules])"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


def test_a_dead_letter_that_fails_to_send_is_retried_then_counted(fake_redis):
    attempts = []

    async def flaky(key, value):  # the producer fails twice, then works
        attempts.append(value)
        if len(attempts) <= 2:
            raise RuntimeError("broker away")

    pipeline = Pipeline(Settings(n_factors=4, top_k=3), RedisSink(fake_redis, "t:"), flaky)
    asyncio.run(pipeline.handle("clicks", [message("clicks", b"not json")]))
    assert len(attempts) == 3 and pipeline.stats.dead_letters == 1

    async def down(key, value):
        attempts.append(value)
        raise RuntimeError("broker gone")

    pipeline.send_dead_letter = down
    asyncio.run(pipeline.handle("clicks", [message("clicks", b"still not json", offset=9)]))
    assert len(attempts) == 3 + 4  # every attempt made, then counted (and logged)
    assert pipeline.stats.dead_letters == 1 and pipeline.stats.dead_letter_failures == 1
    assert pipeline.report()["dead_letter_failures"] == 1


def test_a_snapshot_asked_for_during_a_batch_waits_for_its_dead_letters(fake_redis, tmp_path):
    """The snapshot timer can fire while a batch awaits its dead letters: the snapshot must
    not hold offsets past events whose letters were not sent yet."""
    sent = []
    snapshots = tmp_path / "snapshots"

    async def send(key, value):
        pipeline.snapshot_when_idle()  # the timer, firing while this letter is on its way
        assert not snapshots.exists() or not list(snapshots.rglob("*.npz"))
        sent.append(value)

    settings = Settings(n_factors=4, top_k=3, state_dir=str(tmp_path))
    pipeline = Pipeline(settings, RedisSink(fake_redis, "t:"), send)
    good = message("clicks", {"user": "u", "item": "i"})
    batch = [message("clicks", b"not json", offset=0), good]
    asyncio.run(pipeline.handle("clicks", batch))
    assert len(sent) == 1
    written = list(snapshots.rglob("*.npz"))
    assert len(written) == 1  # taken once the batch was done, letters sent
    pipeline.snapshot_when_idle()  # between batches: at once
    assert len(list(snapshots.rglob("*.npz"))) == 2


def test_messages_delivered_again_after_a_rebalance_are_not_learned_twice(fake_redis):
    """Faust resumes a partition it keeps through a rebalance at its last commit, behind what
    the engine learned: those messages are skipped; other messages at those offsets (another
    log: the memory-only broker restarted) are learned."""
    import dataclasses

    pipeline, _ = make_pipeline(fake_redis)
    clicks = [
        dataclasses.replace(
            message("clicks", {"user": f"u{n}", "item": "i1"}, offset=n), timestamp=100.0 + n
        )
        for n in range(6)
    ]
    asyncio.run(pipeline.handle("clicks", clicks))
    learned = pipeline.engine.interactions
    assert learned == 6
    asyncio.run(pipeline.handle("clicks", [*clicks[3:], clicks[-1]]))  # from the last commit on
    assert pipeline.engine.interactions == learned
    assert pipeline.stats.redelivered == 4 and pipeline.report()["redelivered"] == 4
    other_log = [dataclasses.replace(m, timestamp=500.0 + m.offset) for m in clicks[:2]]
    asyncio.run(pipeline.handle("clicks", other_log))
    assert pipeline.engine.interactions == learned + 2
    after = dataclasses.replace(
        message("clicks", {"user": "v", "item": "i1"}, offset=6), timestamp=1.0
    )
    asyncio.run(
        pipeline.handle("clicks", [after])
    )  # past the engine's offset: new, whatever its time
    assert pipeline.engine.interactions == learned + 3


def test_messages_delivered_again_from_further_back_than_remembered_ask_the_broker(fake_redis):
    """Past the last messages the pipeline remembers, a redelivery is told by the broker's
    word on its log (the timestamp of the last message learned, asked once per partition and
    position): the same log, skipped; another log, or no answer, learned."""
    import dataclasses

    from streamer.redelivery import Delivered
    from streamer.stack import UNANSWERED

    def clicks(stamp0):
        return [
            dataclasses.replace(
                message("clicks", {"user": f"u{n}", "item": "i1"}, offset=n),
                timestamp=stamp0 + n,
            )
            for n in range(10)
        ]

    for answer, learned_again in [("other", 6), (UNANSWERED, 6), ("error", 6), ("same", 0)]:
        asked: list[dict] = []

        async def check(positions, answer=answer, asked=asked):
            asked.append(dict(positions))
            if answer == "error":
                raise ConnectionError("no broker")
            ((tp, offset),) = positions.items()
            stamp = {"same": round((100.0 + offset) * 1000), "other": 7}.get(answer, answer)
            return {tp: stamp}

        pipeline, _ = make_pipeline(fake_redis)
        pipeline.redeliveries.delivered = Delivered(size=4)
        pipeline.redeliveries.log_check = check
        learned = clicks(100.0)
        asyncio.run(pipeline.handle("clicks", learned))
        assert pipeline.engine.interactions == 10
        again = learned[:6]  # offsets 0-5: before the last 4 remembered (6-9)
        asyncio.run(pipeline.handle("clicks", again[:3]))
        asyncio.run(pipeline.handle("clicks", again[3:]))
        assert asked == [{("clicks", 0): 9}], answer  # once for the partition at its position
        assert pipeline.engine.interactions == 10 + learned_again, answer
        assert pipeline.stats.redelivered == 6 - learned_again
    # the same log: the rest of it delivered again is skipped without asking again
    asyncio.run(pipeline.handle("clicks", learned))
    assert pipeline.engine.interactions == 10 and len(asked) == 1


def test_a_snapshot_that_cannot_be_written_is_counted_and_the_stream_goes_on(
    fake_redis, tmp_path, monkeypatch
):
    """A full disk mid-snapshot: no partial file is left, the failure is logged and counted,
    the batches go on, and the next snapshot is written once there is room again."""
    import errno

    from streamer import snapshot

    def full_disk(f, **arrays):
        f.write(b"x" * 1000)
        raise OSError(errno.ENOSPC, "No space left on device")

    settings = Settings(n_factors=4, top_k=3, state_dir=str(tmp_path))
    pipeline = Pipeline(settings, RedisSink(fake_redis, "t:"), lambda k, v: None)
    monkeypatch.setattr(snapshot.np, "savez", full_disk)
    batch = [message("clicks", {"user": f"u{n}", "item": "i"}, offset=n) for n in range(3)]
    asyncio.run(pipeline.handle("clicks", batch[:2]))
    pipeline.snapshot_when_idle()  # between batches: at once
    assert pipeline.stats.snapshot_failures == 1
    assert pipeline.report()["snapshot_failures"] == 1
    assert not [p for p in tmp_path.rglob("*") if p.is_file()]  # no partial file
    asyncio.run(pipeline.handle("clicks", batch[2:]))
    assert pipeline.engine.events == 3
    monkeypatch.undo()
    saved = pipeline.snapshot()
    assert saved is not None and saved.offsets == {"clicks": {0: 3}}


def test_redis_away_at_start_is_an_outage_but_a_refusal_fails_at_once(caplog):
    """A Redis not up yet: warned of, the worker starts and keeps its lists until it is back;
    a refused password or a failed TLS handshake: a clear error at once (waiting will not
    mend them)."""
    import socket
    import ssl

    import pytest
    import redis

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    away = RedisSink.from_url(f"redis://127.0.0.1:{port}/0", "t:")
    # one attempt per call: the sink retries with its own backoff (redis-py's retries held a
    # refused call ~4 s, in the event loop)
    assert away.client.get_retry()._retries == 0
    away.setup()
    assert "Redis not reachable" in caplog.text and not away.reachable
    assert away.write([], extra={"progress": {"events": 1}}) is None and away.pending == 1

    class Refusing:
        def __init__(self, error):
            self.error = error

        def ping(self):
            raise self.error

    with pytest.raises(ConnectionError, match="refused this worker"):
        RedisSink(Refusing(redis.AuthenticationError("WRONGPASS")), "t:").setup()
    try:
        raise ssl.SSLError("CERTIFICATE_VERIFY_FAILED")
    except ssl.SSLError:
        try:
            raise redis.ConnectionError("Error 1 connecting")
        except redis.ConnectionError as exc:
            handshake = exc
    with pytest.raises(ConnectionError, match="over TLS failed"):
        RedisSink(Refusing(handshake), "t:").setup()


def test_while_redis_is_away_a_short_question_comes_before_each_full_write(fake_redis):
    """In an outage each retry first asks the probe (short timeouts): a Redis that does not
    answer holds the event loop for the probe's timeout, not for a whole write's."""
    import redis

    class Probe:
        def __init__(self):
            self.up, self.asked = False, 0

        def ping(self):
            self.asked += 1
            if not self.up:
                raise redis.TimeoutError("no answer")
            return True

    probe = Probe()
    sink = RedisSink(fake_redis, "t:", probe=probe)
    fake_redis.down = True
    assert sink.write([], extra={"a": 1}) is None  # the first failure: the write itself
    assert probe.asked == 0 and sink.pending == 1
    pipelines = fake_redis.pipelines
    for _ in range(3):
        sink._retry_at = 0.0  # (the backoff over)
        assert sink.write([], extra={"b": 2}) is None
    assert probe.asked == 3 and fake_redis.pipelines == pipelines  # no write tried
    fake_redis.down, probe.up, sink._retry_at = False, True, 0.0
    assert sink.write([]) is not None and sink.pending == 0
    assert fake_redis.json("t:a") == 1 and fake_redis.json("t:b") == 2


def test_similar_lists_due_after_the_last_batch_are_published_by_the_timer(fake_redis, monkeypatch):
    """Similar-item lists go out with a batch once every sim_publish_s, for the items chosen
    since: items chosen after the last due batch, on a stream that then goes quiet, are the
    report timer's to publish once their time comes (stale_similar), once; and a due set
    larger than a batch computes drains over the timer's calls too."""
    clock = [1000.0]
    monkeypatch.setattr("streamer.pipeline.time.time", lambda: clock[0])
    pipeline, _ = make_pipeline(fake_redis, sim_publish_s=3600.0)
    pipeline.stats.clock = lambda: clock[0]  # when batches last ended, on the same clock
    asyncio.run(pipeline.handle("clicks", [message("clicks", {"user": "u0", "item": "a"})]))
    assert pipeline.stale_similar() == []  # a's list went with the batch; not due for an hour
    clicks = [
        message("clicks", {"user": f"u{n}", "item": item}, offset=n)
        for n in range(1, 5)
        for item in ("a", "b")
    ]
    asyncio.run(pipeline.handle("clicks", clicks))  # not due: no list
    assert pipeline.stale_similar() == [] and "t:sim:b" not in fake_redis.data
    clock[0] += 3600.0  # the hour has passed, and no batch came
    similar = {s.item: [i for i, _ in s.items] for s in pipeline.stale_similar()}
    assert similar == {"a": ["b"], "b": ["a"]}
    clock[0] += 3600.0
    assert pipeline.stale_similar() == []  # nothing chosen since

    many = 2 * SIMILAR_PER_BATCH + 1
    clicks = [message("clicks", {"user": "v", "item": f"i{n}"}, offset=9 + n) for n in range(many)]
    asyncio.run(pipeline.handle("clicks", clicks))  # not due: none
    clock[0] += 3600.0
    sizes = [len(pipeline.stale_similar()) for _ in range(4)]
    assert sizes == [SIMILAR_PER_BATCH, SIMILAR_PER_BATCH, 1, 0]


def test_popular_lists_learned_after_the_last_due_batch_are_published_by_the_timer(fake_redis):
    """Popular lists go out with a batch once every pop_publish_s: positives learned after
    the last such batch, on a stream that then goes quiet, are published by the report timer
    (stale_popular), once."""
    pipeline, _ = make_pipeline(fake_redis, pop_publish_s=3600.0)
    asyncio.run(pipeline.handle("items", [message("items", {"item": "i1"})]))  # due: nothing yet
    assert "t:pop" not in fake_redis.data
    clicks = [message("clicks", {"user": f"u{n}", "item": "i1"}, offset=n) for n in range(3)]
    asyncio.run(pipeline.handle("clicks", clicks))  # not due for an hour
    assert "t:pop" not in fake_redis.data
    popular = pipeline.stale_popular()
    assert [(p.key, [i for i, _ in p.items]) for p in popular if p.key == ""] == [("", ["i1"])]
    assert pipeline.stale_popular() == []  # nothing learned since


def test_periodic_snapshots_are_written_apart_and_a_failed_one_is_counted(fake_redis, tmp_path):
    """With the engine in a process of its own, the timer's snapshot is written by a fork of
    it while batches go on; how it ended is told with a later answer: its time, or a failure
    counted (the last one written stands)."""
    from streamer import snapshot
    from streamer.hosts import ProcessHost
    from streamer.polling import poll

    settings = Settings(n_factors=4, top_k=3, state_dir=str(tmp_path))
    host = ProcessHost(settings)
    try:
        pipeline = Pipeline(settings, RedisSink(fake_redis, "t:"), lambda k, v: None, host=host)
        clicks = [message("clicks", {"user": f"u{n}", "item": "i"}, offset=n) for n in range(4)]

        def told() -> None:  # batches until the outcome of the snapshot apart is told
            poll(
                lambda: asyncio.run(pipeline.handle("contexts", [])) or pipeline.stats,
                lambda stats: stats.snapshot_write_s is not None or stats.snapshot_failures,
                timeout=30,
                interval=0.05,
            )

        asyncio.run(pipeline.handle("clicks", clicks[:2]))
        pipeline.snapshot_when_idle()  # between batches: begun at once, written apart
        first = settings.snapshot_path / "snapshot-000000000001.npz"
        asyncio.run(pipeline.handle("clicks", clicks[2:3]))  # the stream goes on meanwhile
        told()
        assert pipeline.stats.snapshot_failures == 0 and pipeline.stats.snapshot_write_s > 0
        assert snapshot.load(first, settings)[1].offsets == {"clicks": {0: 2}}
        # the next one cannot be written (its temporary file's name taken by a directory)
        blocked = snapshot.next_path(settings.snapshot_path)
        blocked.with_name(f".{blocked.name}.tmp").mkdir()
        pipeline.stats.snapshot_write_s = None
        pipeline.snapshot_when_idle()
        told()
        assert pipeline.stats.snapshot_failures == 1
        assert pipeline.report()["snapshot_failures"] == 1
        assert not blocked.exists()  # the last one written stands
        asyncio.run(pipeline.handle("clicks", clicks[3:]))
        assert host.ask(EngineRoom.status).users == 4  # learning went on
    finally:
        host.close()
