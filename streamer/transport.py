"""Faust's aiokafka transport with a configurable fetch wait (Faust hard-codes 1500 ms).

A fetch that finds no new data waits up to ``fetch_max_wait_ms`` on the broker before it
answers; on a broker that does not answer early when data arrives, that wait is added to the
freshness of every event. Registered as the ``streamrec://`` broker scheme through the
``faust.transports`` entry point.
"""

from __future__ import annotations

from typing import Any

from faust.transport.drivers import aiokafka as driver

DEFAULT_FETCH_MAX_WAIT_MS = 1500


class ConsumerThread(driver.AIOKafkaConsumerThread):
    def _create_worker_consumer(self, transport: Any) -> Any:
        consumer = super()._create_worker_consumer(transport)
        wait = getattr(self.app, "fetch_max_wait_ms", DEFAULT_FETCH_MAX_WAIT_MS)
        consumer._fetch_max_wait_ms = int(wait)  # read by aiokafka when the consumer starts
        return consumer


class Consumer(driver.Consumer):
    def _new_consumer_thread(self) -> ConsumerThread:
        return ConsumerThread(self, loop=self.loop, beacon=self.beacon)

    async def perform_seek(self) -> None:
        """After Faust's seek to the committed offsets, on the first assignment after start,
        each partition the engine has seen resumes at the engine's own offset: a restored
        snapshot's (the events after it are learned again, none before it twice, although the
        committed offsets may be ahead of it or behind it). Later assignments keep Faust's
        committed offsets (seeking a running worker to its own positions stalled Faust's
        recovery when the broker had lost its log: a restart of the memory-only broker), but
        for partitions taken over from another worker (``streamer.handover``); what they
        deliver again of what the engine learned is skipped (``streamer.redelivery``)."""
        await super().perform_seek()
        positions = getattr(self.app, "streamrec_positions", None)
        resume: dict[tuple[str, int], int] = {}
        if positions is not None and not getattr(self, "_streamrec_resumed", False):
            self._streamrec_resumed = True
            resume = positions()
        # several workers: newly assigned partitions whose users another worker published
        # last (a worker stopped, killed, or a rebalance) resume where that worker's published
        # state stands (the users topic is read for those partitions only)
        take_over = getattr(self.app, "streamrec_take_over", None)
        assigned = {tp.partition for tp in self.assignment()}
        if take_over is not None:
            owned: set[int] = getattr(self, "_streamrec_owned", set())
            resume.update(await take_over(assigned - owned))
        self._streamrec_owned = assigned
        for tp in self.assignment():
            offset = resume.get((tp.topic, tp.partition))
            if offset is not None:
                await self.seek(tp, offset)


class Transport(driver.Transport):
    Consumer = Consumer
