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
from dataclasses import replace
from typing import Any, TypeVar

import faust

from streamer import snapshot, web
from streamer.batching import take_batches
from streamer.engine import Engine
from streamer.feeds import TopicFeed, read_partitions
from streamer.pipeline import Message, Pipeline, arm_b_path
from streamer.polling import poll
from streamer.publisher import RedisSink
from streamer.redelivery import LogCheck
from streamer.security import faust_credentials, kafka_options, redis_options
from streamer.settings import Settings
from streamer.sharing import Sharing
from streamer.stack import UNANSWERED, timestamps_at

log = logging.getLogger("streamrec")

#: Seconds between attempts to reach a broker that is away when the worker starts.
BROKER_RETRY_S = 5.0
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
    """A pipeline on the newest valid snapshot's engine and offsets, or on a new engine."""
    found = None
    check = _log_check(settings)
    if settings.snapshot_interval_s > 0:  # snapshots off: none is read either
        found = snapshot.load_latest(settings.snapshot_path, settings)
    if found is None:
        return Pipeline(settings, sink, send_dead_letter, log_check=check)
    engine, saved = found
    stamps = {(t, p): ms for t, parts in saved.stamps.items() for p, ms in parts.items()}
    last = {(t, p): saved.offsets[t][p] - 1 for t, p in stamps}
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
            snapshot.describe(saved),
            ", ".join(changed),
        )
        return Pipeline(settings, sink, send_dead_letter, log_check=check)
    log.info("resuming from snapshot %s", snapshot.describe(saved))
    engine_b = _arm_b(settings, saved) if settings.ab else None
    # The restored state lives as long as the worker: out of the cyclic collector's walks now,
    # as the report timer does with what has lived since (the load made it with the collector
    # paused, so its first collections would otherwise walk all of it, in the first batches).
    gc.freeze()
    return Pipeline(
        settings, sink, send_dead_letter, engine, saved.offsets, saved.stamps, engine_b, check
    )


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


def _arm_b(settings: Settings, saved: snapshot.Snapshot) -> Engine | None:
    """Arm b's engine from its snapshot at the same offsets as arm a's; None (a new arm b,
    logged) if there is none, e.g. when the arms were just turned on or arm b changed."""
    found = snapshot.load_matching(
        arm_b_path(settings), replace(settings, **settings.ab_changes()), saved.offsets
    )
    if found is None:
        log.warning("no snapshot of arm b at the offsets of %s: arm b starts afresh", saved.path)
        return None
    log.info("arm b resumes from snapshot %s", snapshot.describe(found[1]))
    return found[0]


def _agent(kind: str, work: Pipeline, settings: Settings) -> Any:
    async def process(stream: faust.StreamT) -> None:
        """Decode, learn, refresh, publish: one micro-batch at a time."""
        async for events in batches(stream, settings):
            await work.handle(kind, [_message(event) for event in events])

    return process


def _message(event: Any) -> Message:
    m = event.message
    return Message(m.topic, m.partition, m.offset, m.key, event.value, m.timestamp or 0.0)
