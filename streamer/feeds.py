"""Topics every worker reads in full, outside the consumer group.

Clicks and contexts are split between the workers of a consumer group by partition; item
metadata must not be: a worker that never saw an item's tags and title cannot place it for its
users (cold start) nor show its title. Nor must the other workers' learning (the ``sync``
topic, ``streamer.sync``). So instead of an agent in the group, each worker runs a feed per such
topic: a consumer outside any group, assigned all of the topic's partitions, starting where the
worker's engine stands (a restored snapshot's offsets) or at the beginning, feeding the same
pipeline as the agents do.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from streamer.pipeline import Message, Pipeline
from streamer.security import aiokafka_options
from streamer.settings import Settings

log = logging.getLogger(__name__)

#: Seconds between attempts while the broker or the topic is not there.
RETRY_S = 1.0
#: Empty fetches in a row that end a read to the end of a topic (half a second each).
QUIET_FETCHES = 3


class TopicFeed:
    """All partitions of ``topic`` into ``handle``, from ``work``'s positions (see the
    module)."""

    def __init__(
        self,
        settings: Settings,
        work: Pipeline,
        topic: str,
        handle: Callable[[list[Message]], Awaitable[None]],
    ) -> None:
        self.settings, self.work, self.topic, self.handle = settings, work, topic, handle
        self.partitions: list[int] = []

    async def run(self) -> None:
        """Consume until cancelled; a broker that goes away is waited for, not fatal."""
        while True:
            try:
                await self._consume()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the broker gone, the topic remade: start again
                log.warning(
                    "feed of %s: %s: %s; again in %.0f s",
                    self.topic, type(exc).__name__, exc, RETRY_S,
                )  # fmt: skip
                await asyncio.sleep(RETRY_S)

    async def _consume(self) -> None:
        from aiokafka import TopicPartition

        s = self.settings
        consumer = _consumer(s)
        await consumer.start()
        try:
            topic = self.topic
            parts = consumer.partitions_for_topic(topic)
            while not parts:
                await consumer.force_metadata_update()
                parts = consumer.partitions_for_topic(topic)
                if not parts:
                    await asyncio.sleep(RETRY_S)
            tps = [TopicPartition(topic, p) for p in sorted(parts)]
            consumer.assign(tps)
            positions = self.work.positions()
            for tp in tps:
                offset = positions.get((topic, tp.partition))
                if offset is None:
                    await consumer.seek_to_beginning(tp)
                else:
                    consumer.seek(tp, offset)
            self.partitions = sorted(parts)
            log.info("feed: reading all %d partitions of %s", len(tps), topic)
            while True:
                fetched = await consumer.getmany(timeout_ms=1000, max_records=s.batch_size)
                for records in fetched.values():
                    await self.handle([_message(r) for r in records])
        finally:
            await consumer.stop()


def _consumer(settings: Settings) -> Any:
    """A consumer outside any group, from the beginning unless told where."""
    from aiokafka import AIOKafkaConsumer

    return AIOKafkaConsumer(
        bootstrap_servers=settings.broker,
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        fetch_max_wait_ms=settings.fetch_max_wait_ms,
        **aiokafka_options(settings),
    )


def _message(record: Any) -> Message:
    return Message(
        record.topic,
        record.partition,
        record.offset,
        record.key,
        record.value,
        (record.timestamp or 0) / 1000.0,
    )


async def read_partitions(settings: Settings, topic: str, partitions: set[int]) -> list[Message]:
    """Every message of ``partitions`` of ``topic``, from the beginning to the end (a consumer
    outside any group; the end: past the broker's high watermark, and ``QUIET_FETCHES`` fetches
    in a row that find nothing more: the local broker's high watermark can be short)."""
    from aiokafka import TopicPartition

    consumer = _consumer(settings)
    await consumer.start()
    out: list[Message] = []
    try:
        known = consumer.partitions_for_topic(topic) or set()
        tps = [TopicPartition(topic, p) for p in sorted(partitions) if p in known]
        if not tps:
            return out
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        end = await consumer.end_offsets(tps)
        quiet = 0  # fetches in a row that found nothing (the local broker's end can be short)
        while quiet < QUIET_FETCHES:
            fetched = await consumer.getmany(timeout_ms=500, max_records=10_000)
            for records in fetched.values():
                out.extend(_message(r) for r in records)
            at = [await consumer.position(tp) for tp in tps]
            done = all(a >= end[tp] for a, tp in zip(at, tps, strict=True))
            quiet = quiet + 1 if done and not fetched else 0
        return out
    finally:
        await consumer.stop()
