"""Publish a log to Kafka with kafka-python, paced by the log's clock or a rate cap."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from streamer.replay.record import LogRecord
from streamer.settings import Settings


@dataclass
class Summary:
    sent: Counter[str] = field(default_factory=Counter)
    seconds: float = 0.0
    first_ts: float | None = None
    last_ts: float | None = None

    @property
    def total(self) -> int:
        return sum(self.sent.values())

    def __str__(self) -> str:
        rate = self.total / self.seconds if self.seconds else 0.0
        topics = ", ".join(f"{topic}: {n}" for topic, n in sorted(self.sent.items()))
        return f"sent {self.total} events ({topics}) in {self.seconds:.1f} s, {rate:,.0f} events/s"


class Pacer:
    """Sleeps so that events go out at the log's pace times ``speed``, and at most ``rate``/s.

    ``speed=0`` and ``rate=0`` mean no limit.

    >>> naps = []
    >>> p = Pacer(speed=2.0, rate=0, clock=lambda: 0.0, sleep=naps.append)
    >>> p.wait(100.0); p.wait(110.0); naps
    [5.0]
    """

    def __init__(self, speed: float, rate: float, clock: Any = time.monotonic, sleep: Any = None):
        self.speed, self.rate, self.clock = speed, rate, clock
        self.sleep = sleep or time.sleep
        self.start = clock()
        self.log_start: float | None = None
        self.count = 0

    def wait(self, log_ts: float) -> None:
        due = self.start
        if self.speed > 0:
            if self.log_start is None:
                self.log_start = log_ts
            due = max(due, self.start + (log_ts - self.log_start) / self.speed)
        if self.rate > 0:
            due = max(due, self.start + self.count / self.rate)
        self.count += 1
        delay = due - self.clock()
        if delay > 0:
            self.sleep(delay)


def replay(
    records: Iterable[LogRecord],
    settings: Settings,
    speed: float = 0.0,
    rate: float = 0.0,
    limit: int | None = None,
    progress: bool = True,
    producer: Any = None,
) -> Summary:
    """Send ``records`` to their topics (key = user or item id); returns what was sent."""
    from kafka import KafkaProducer
    from tqdm import tqdm

    from streamer.security import kafka_options

    own = producer is None
    if producer is None:
        producer = KafkaProducer(
            bootstrap_servers=settings.broker,
            linger_ms=5,
            batch_size=256 * 1024,
            acks=1,
            **kafka_options(settings),
        )
    topics = settings.input_topics
    summary = Summary()
    pacer = Pacer(speed, rate)
    started = time.monotonic()
    bar = tqdm(total=limit, unit="ev", disable=not progress, mininterval=0.5)
    try:
        for record in records:
            if limit is not None and summary.total >= limit:
                break
            pacer.wait(record.ts)
            producer.send(topics[record.kind], key=record.key.encode(), value=record.payload())
            summary.sent[record.kind] += 1
            if summary.first_ts is None:
                summary.first_ts = record.ts
            summary.last_ts = record.ts
            bar.update(1)
        producer.flush()
    finally:
        bar.close()
        if own:
            producer.close()
    summary.seconds = time.monotonic() - started
    return summary
