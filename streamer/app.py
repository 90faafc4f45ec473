"""The Faust app: one thin agent per input topic, feeding micro-batches to the pipeline."""

from __future__ import annotations

import json
import logging
from typing import Any

import faust

from streamer.pipeline import Message, Pipeline
from streamer.publisher import RedisSink
from streamer.settings import Settings

log = logging.getLogger("streamrec")


def base_app(settings: Settings) -> faust.App:
    """A Faust app configured from ``settings``, with no agents yet."""
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
        web_enabled=settings.web_enabled,
        web_port=settings.web_port,
        web_bind="127.0.0.1",
        producer_acks=1,
    )
    app.fetch_max_wait_ms = settings.fetch_max_wait_ms  # type: ignore[attr-defined]
    return app


def input_topics(settings: Settings) -> dict[str, str]:
    """Topic name per kind of input."""
    return {
        "clicks": settings.topic_clicks,
        "contexts": settings.topic_contexts,
        "items": settings.topic_items,
    }


def batches(stream: faust.StreamT, settings: Settings) -> Any:
    """The stream in micro-batches of events (``take_events``: messages keep their topic)."""
    # take_events is in faust.Stream but missing from StreamT
    return stream.take_events(  # type: ignore[attr-defined]
        settings.batch_size, within=settings.batch_within_s
    )


def create_app(settings: Settings, pipeline: Pipeline | None = None) -> tuple[faust.App, Pipeline]:
    """A Faust app wired to ``settings``, and the pipeline its agents feed."""
    app = base_app(settings)
    topics = input_topics(settings)
    dead_letters = app.topic(settings.topic_dead_letters, key_type=bytes, value_type=bytes)

    async def send_dead_letter(key: bytes | None, value: bytes) -> Any:
        return await dead_letters.send(key=key, value=value)

    sink = RedisSink.from_url(settings.redis_url, settings.redis_prefix, settings.rec_ttl_s)
    work = pipeline or Pipeline(settings, sink, send_dead_letter)

    for kind, name in topics.items():
        topic = app.topic(name, key_type=bytes, value_type=bytes)
        app.agent(topic, name=f"streamrec.{kind}")(_agent(kind, work, settings))

    @app.timer(settings.log_interval_s)
    async def report() -> None:
        figures = work.report()
        metrics = work.engine.metrics_report()
        log.info("streamrec %s", json.dumps(figures))
        log.info("streamrec metrics %s", json.dumps(metrics))
        work.sink.write([], [], extra={"worker": figures, "metrics": metrics})

    return app, work


def _agent(kind: str, work: Pipeline, settings: Settings) -> Any:
    async def process(stream: faust.StreamT) -> None:
        """Decode, learn, refresh, publish: one micro-batch at a time."""
        async for events in batches(stream, settings):
            await work.handle(kind, [_message(event) for event in events])

    return process


def _message(event: Any) -> Message:
    m = event.message
    return Message(m.topic, m.partition, m.offset, m.key, event.value, m.timestamp or 0.0)
