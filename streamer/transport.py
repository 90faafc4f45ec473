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


class Transport(driver.Transport):
    Consumer = Consumer
