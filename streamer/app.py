"""The Faust app: one thin agent per input topic, feeding micro-batches to the pipeline (with
``items_everywhere``, the items feed instead of an agent for ``items``: every partition of it in
every worker)."""

from __future__ import annotations

import asyncio
import gc
import json
import logging
import math
from collections.abc import Callable
from typing import Any, TypeVar

import faust

from streamer import snapshot, web
from streamer.batching import take_batches
from streamer.exits import exit_for_restart
from streamer.feeds import TopicFeed, read_partitions
from streamer.hosts import EngineGone, LocalHost, ProcessHost, make_host
from streamer.pipeline import Message, Pipeline
from streamer.polling import poll
from streamer.publisher import RedisSink
from streamer.redelivery import LogCheck
from streamer.room import EngineRoom
from streamer.security import faust_credentials, kafka_options, redis_options
from streamer.settings import Settings
from streamer.sharing import Sharing
from streamer.stack import UNANSWERED, timestamps_at

log = logging.getLogger("streamrec")

#: Seconds between attempts to reach a broker that is away when the worker starts.
BROKER_RETRY_S = 5.0
#: Seconds between checks that the engine's process is alive (``STREAMREC_ENGINE_PROCESS``).
ENGINE_CHECK_S = 1.0
T = TypeVar("T")


def base_app(settings: Settings, web: bool | None = None) -> faust.App:
    """A Faust app configured from ``settings`` (its web server if ``web``, by default if
    ``settings.web_enabled``), with no agents yet."""
    datadir = settings.state_path / "faust" / settings.app_id  # not ./{app_id}-data
    datadir.parent.mkdir(parents=True, exist_ok=True)  # Faust creates the last level only
    app = faust.App(
        settings.app_id,
        broker=f"streamrec://{settings.broker}",
        value_serializer="raw",
        key_serializer="raw",
        store="memory://",
        datadir=str(datadir),
        topic_partitions=settings.partitions,
        broker_session_timeout=settings.session_timeout_s,
        broker_heartbeat_interval=max(1.0, settings.session_timeout_s / 5),
        consumer_auto_offset_reset="earliest",
        web_enabled=settings.web_enabled if web is None else web,
        web_port=settings.web_port,
        web_bind=settings.web_bind,
        producer_acks=1,
        broker_credentials=faust_credentials(settings),
        # Faust pauses a partition whose stream buffer is under pressure (its back pressure)
        stream_buffer_maxsize=settings.stream_buffer,
    )
    app.fetch_max_wait_ms = settings.fetch_max_wait_ms  # type: ignore[attr-defined]
    return app


def batches(stream: faust.StreamT, settings: Settings) -> Any:
    """The stream in micro-batches of events (messages keep their topic): Faust's
    ``take_events`` with no wait after a late batch (``streamer.batching``)."""
    return take_batches(stream, settings.batch_size, settings.batch_within_s)


def create_app(settings: Settings, pipeline: Pipeline | None = None) -> tuple[faust.App, Pipeline]:
    """A Faust app wired to ``settings``, and the pipeline its agents feed."""
    app = base_app(settings)
    topics = settings.input_topics
    dead_letters = app.topic(settings.topic_dead_letters, key_type=bytes, value_type=bytes)

    async def send_dead_letter(key: bytes | None, value: bytes) -> Any:
        return await dead_letters.send(key=key, value=value)

    sink = RedisSink.from_url(
        settings.redis_url,
        settings.redis_prefix,
        settings.rec_ttl_s,
        settings.redis_pending_max,
        **redis_options(settings),
    )
    work = pipeline or _restored(settings, sink, send_dead_letter)
    # on the first assignment the transport resumes each partition where the engine stands
    app.streamrec_positions = work.positions  # type: ignore[attr-defined]

    for kind, name in topics.items():
        if kind == "items" and settings.items_everywhere:  # read by the feed below instead
            continue
        topic = app.topic(name, key_type=bytes, value_type=bytes)
        app.agent(topic, name=f"streamrec.{kind}")(_agent(kind, work, settings))
    if settings.items_everywhere:  # every worker reads every item, not a share of the group's

        async def handle_items(messages: list[Message]) -> None:
            await work.handle("items", messages)

        items_feed = TopicFeed(settings, work, settings.topic_items, handle_items)

        @app.task
        async def items() -> None:
            await items_feed.run()

    if work.sharing is not None:  # several workers: share what each learns
        _share(app, work, work.sharing, settings)

    @app.timer(settings.log_interval_s)
    async def report() -> None:
        figures = work.report()
        metrics = work.model_report()
        log.info("streamrec %s", json.dumps(figures))
        log.info("streamrec metrics %s", json.dumps(metrics))
        work.sink.write(
            [],
            work.stale_popular(),
            extra={"worker": figures, "metrics": metrics},
            similar=work.stale_similar(),
        )
        # What has lived this long is the model's state: the cyclic collector need not scan it
        # again (a full collection of the whole heap held a batch up for tens of ms).
        gc.freeze()

    if isinstance(work.host, ProcessHost):  # its end, noticed even when no batch comes
        host = work.host

        @app.timer(ENGINE_CHECK_S)
        async def engine_alive() -> None:
            gone = host.ended()
            if gone is not None:
                _engine_gone(gone)

    if settings.snapshot_interval_s > 0:

        @app.timer(settings.snapshot_interval_s)
        async def take_snapshot() -> None:
            work.snapshot_when_idle()

    telemetry, health = web.watch(app, work, settings)
    if settings.web_enabled:
        web.serve(app, work, settings, telemetry, health)
    return app, work


def _share(app: faust.App, work: Pipeline, sharing: Sharing, settings: Settings) -> None:
    """Several workers, one model (``streamer.sharing``) on Faust: the feed of the others'
    deltas, the timer that publishes this worker's, and the hooks of a rebalance (its
    partitions' users published when revoked, taken over when assigned) and of a stop."""
    sync_topic = app.topic(settings.topic_sync, key_type=bytes, value_type=bytes)
    users_topic = app.topic(settings.topic_users, key_type=bytes, value_type=bytes)
    sync_feed = TopicFeed(settings, work, settings.topic_sync, work.handle_deltas)
    sender = settings.worker_name.encode()

    async def send_delta(message: bytes) -> Any:
        return await sync_topic.send(key=sender, value=message)

    async def send_user(partition: int, key: bytes, value: bytes) -> Any:
        return await users_topic.send(key=key, value=value, partition=partition)

    async def read_users(partitions: set[int]) -> list[Message]:
        return await read_partitions(settings, settings.topic_users, partitions)

    async def take_over(partitions: set[int]) -> dict[tuple[str, int], int]:
        return await sharing.take_over(partitions, read_users)

    app.streamrec_take_over = take_over  # type: ignore[attr-defined]  # (streamer.transport)

    @app.task
    async def deltas_in() -> None:
        await sync_feed.run()

    @app.timer(settings.sync_interval_s)
    async def publish() -> None:
        await sharing.publish(send_delta, send_user)

    async def revoked(sender: Any, /, *args: Any, signal: Any, **kwargs: Any) -> None:
        """Partitions leave this worker in a rebalance: their users' state now, so that the
        next owner resumes where this one stopped."""
        await sharing.publish(send_delta, send_user)

    app.on_partitions_revoked.connect(revoked)

    async def hand_over() -> None:
        await sharing.hand_over(send_delta, send_user)
        await app.producer.flush()

    app.streamrec_hand_over = hand_over  # type: ignore[attr-defined]  # (streamer.worker)


def publish_at_stop(work: Pipeline, settings: Settings) -> None:
    """The last users' state and deltas of a stopped worker, so that the next owner of its
    partitions resumes where it stopped (Faust revokes nothing at a stop): sent with a
    producer of its own, once the worker's loop has ended (no batch can come after)."""
    sharing = work.sharing
    if sharing is None:
        return
    from kafka import KafkaProducer

    producer = KafkaProducer(
        bootstrap_servers=settings.broker, max_request_size=1 << 20, **kafka_options(settings)
    )
    sender = settings.worker_name.encode()

    async def send_delta(message: bytes) -> Any:
        return producer.send(settings.topic_sync, key=sender, value=message).get(timeout=10)

    async def send_user(partition: int, key: bytes, value: bytes) -> Any:
        future = producer.send(settings.topic_users, key=key, value=value, partition=partition)
        return future.get(timeout=10)

    try:
        asyncio.run(sharing.publish(send_delta, send_user))
        producer.flush(timeout=10)
    finally:
        producer.close(timeout=5)


def _log_check(settings: Settings) -> LogCheck:
    """The broker's timestamps at given offsets (:func:`streamer.stack.timestamps_at`), off the
    event loop: whether a log delivered again is the one the engine learned."""

    async def check(positions: dict[tuple[str, int], int]) -> dict[tuple[str, int], int | None]:
        return await asyncio.to_thread(
            timestamps_at, settings.broker, positions, kafka_options(settings)
        )

    return check


def _restored(settings: Settings, sink: RedisSink, send_dead_letter: Any) -> Pipeline:
    """A pipeline on the newest valid snapshot's engine and offsets, or on a new engine (in
    the host ``settings`` ask for: ``streamer.hosts``)."""
    host = make_host(settings)
    check = _log_check(settings)
    found = None
    if settings.snapshot_interval_s > 0:  # snapshots off: none is read either
        found = host.ask(EngineRoom.restore)
    if found is None:
        return Pipeline(settings, sink, send_dead_letter, log_check=check, host=host)
    stamps = {(t, p): ms for t, parts in found.stamps.items() for p, ms in parts.items()}
    last = {(t, p): found.offsets[t][p] - 1 for t, p in stamps}
    now = _when_reachable(lambda: timestamps_at(settings.broker, last, kafka_options(settings)))
    unanswered = [f"{t}[{p}]" for (t, p) in stamps if now[(t, p)] == UNANSWERED]
    changed = [f"{t}[{p}]" for (t, p), ms in stamps.items() if now[(t, p)] not in (ms, UNANSWERED)]
    if unanswered and not changed:  # the learned state is kept: nothing says the log changed
        log.warning(
            "the broker did not serve %s at the snapshot's offsets: its log not checked",
            ", ".join(unanswered),
        )
    if changed:  # not the log it learned from (a memory-only broker restarted, topics remade)
        log.warning(
            "snapshot %s learned from another log than the broker's %s: starting afresh",
            snapshot.describe(found),
            ", ".join(changed),
        )
        host.ask(EngineRoom.start_afresh)
        return Pipeline(settings, sink, send_dead_letter, log_check=check, host=host)
    log.info("resuming from snapshot %s", snapshot.describe(found))
    host.ask(EngineRoom.keep_restored)
    return Pipeline(
        settings, sink, send_dead_letter, offsets=found.offsets, stamps=found.stamps,
        log_check=check, host=host,
    )  # fmt: skip


def _when_reachable(check: Callable[[], T], retry_s: float = BROKER_RETRY_S) -> T:
    """``check()`` once the broker answers: a worker started while the broker is away waits
    for it (its snapshot's log cannot be told from another one before), and says so."""
    from kafka.errors import KafkaError

    def attempt() -> tuple[T] | None:
        try:
            return (check(),)
        except KafkaError as exc:  # not reachable: no bootstrap, no broker available
            log.warning(
                "broker not reachable (%s): the snapshot is loaded once its log can be checked; "
                "again in %.0f s", exc, retry_s,
            )  # fmt: skip
            return None

    answered = poll(attempt, lambda found: found is not None, math.inf, retry_s)
    assert answered is not None  # (no time limit)
    return answered[0]


def _agent(kind: str, work: Pipeline, settings: Settings) -> Any:
    async def process(stream: faust.StreamT) -> None:
        """Decode, learn, refresh, publish: one micro-batch at a time."""
        try:
            if isinstance(work.host, LocalHost):
                async for events in batches(stream, settings):
                    await work.handle(kind, [_message(event) for event in events])
            else:
                await _overlapped(kind, stream, work, settings)
        except EngineGone as exc:
            _engine_gone(exc)

    return process


def _engine_gone(exc: EngineGone) -> None:
    """The engine's process ended: the worker cannot go on without its state, which is the
    last snapshot's; it exits 1, and a restart resumes there."""
    exit_for_restart(log, "%s", exc)


async def _overlapped(kind: str, stream: faust.StreamT, work: Pipeline, settings: Settings) -> Any:
    """The agent's loop with the engine in a process of its own. Catching up on a backlog
    (the batch came full: ``streamer.batching`` fills batches while the log holds enough), the
    next batch is read (Faust's share of the work, in this process) while the engine learns
    the last one (in its own); one batch waits at most, Faust's back pressure holds the rest.
    On a paced stream the next batch is cut once the last is handled, as in one process: read
    ahead, it would be cut early and wait behind the last, a batch's time more for its events
    (at 3,000 MovieLens events/s here, p50 127 ms against 62, docs/benchmarks.md session 21)."""
    ready: asyncio.Queue[list[Message]] = asyncio.Queue(maxsize=1)
    handled = asyncio.Event()

    async def read() -> None:
        async for events in batches(stream, settings):
            full = len(events) >= settings.batch_size
            await ready.put([_message(event) for event in events])
            if not full:
                handled.clear()  # (no await since the put: the batch is not handled yet)
                await handled.wait()

    reader = asyncio.ensure_future(read())
    try:
        while True:
            batch = asyncio.ensure_future(ready.get())
            await asyncio.wait([batch, reader], return_when=asyncio.FIRST_COMPLETED)
            if not batch.done():  # the stream ended (or failed): no more batches
                batch.cancel()
                return reader.result()
            await work.handle(kind, batch.result())
            handled.set()
    finally:
        reader.cancel()


def _message(event: Any) -> Message:
    m = event.message
    return Message(m.topic, m.partition, m.offset, m.key, event.value, m.timestamp or 0.0)
