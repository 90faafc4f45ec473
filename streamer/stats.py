"""Running figures of the worker: throughput, rejections, freshness."""

from __future__ import annotations

import time
from collections import Counter, deque
from typing import Any

import numpy as np


class Stats:
    """Counters since start, and freshness over the last ``window`` events.

    Freshness is the time from an event's production (its Kafka timestamp) to the moment the
    list it changed was written to Redis.

    Examples
    --------
    >>> s = Stats(clock=lambda: 10.0)
    >>> s.observe(events=4, rejected=1, freshness_s=[0.010, 0.020, 0.030])
    >>> r = s.report()
    >>> r["events"], r["rejected"], r["freshness_p50_ms"]
    (4, 1, 20.0)
    >>> clock = [0.0]
    >>> s = Stats(clock=lambda: clock[0]); s.observe(events=10); clock[0] = 2.0
    >>> s.report(advance=False)["events_per_s"], s.report()["events_per_s"]
    (5.0, 5.0)
    """

    def __init__(self, window: int = 10_000, clock: Any = time.monotonic) -> None:
        self.clock = clock
        self.started = clock()
        self.events = 0
        self.rejected = 0
        self.lists = 0
        self.errors = 0
        self.dead_letters = 0  # sent
        self.dead_letter_failures = 0  # not sent after every retry (logged)
        self.snapshot_pause_s: float | None = None  # how long the last snapshot held the stream
        self.snapshot_write_s: float | None = None  # how long the last one took to write
        self.snapshot_failures = 0  # snapshots not written (a full disk...: logged)
        self.by_topic: Counter[tuple[str, str]] = Counter()  # (topic, outcome) -> messages
        self.batches: Counter[str] = Counter()  # topic -> micro-batches
        self.rebalances = 0
        self.redelivered = 0  # messages learned before, delivered again (streamer.redelivery)
        self.fetch_restarts = 0  # fetches in flight through a stall, restarted (streamer.web)
        self.last_batch = self.started  # when the last batch was processed (clock time)
        self._freshness: deque[float] = deque(maxlen=window)
        self._last = (self.started, 0)

    def observe(
        self,
        events: int,
        rejected: int = 0,
        lists: int = 0,
        freshness_s: Any = (),
        topic: str = "",
        learned: int = 0,
        failed: int = 0,
        redelivered: int = 0,
    ) -> None:
        """One batch of ``events`` messages of ``topic``: ``redelivered`` skipped (learned
        before a rebalance), ``rejected`` at decoding (dead letters), ``failed`` after it,
        ``learned`` the rest."""
        self.events += events
        self.redelivered += redelivered
        self.rejected += rejected
        self.lists += lists
        self._freshness.extend(freshness_s)
        if topic:
            self.last_batch = self.clock()
            self.batches[topic] += 1
            outcomes = ("learned", learned), ("rejected", rejected), ("failed", failed)
            for outcome, n in (*outcomes, ("redelivered", redelivered)):
                if n:
                    self.by_topic[topic, outcome] += n

    def recent_freshness(self) -> list[float]:
        """The freshness (seconds) of the last ``window`` events with one."""
        return list(self._freshness)

    def report(self, advance: bool = True) -> dict[str, Any]:
        """Figures since the previous report (rate) and over the window (freshness); a
        report that does not ``advance`` (a scrape, a dashboard) leaves the rate's window to
        the periodic report."""
        now = self.clock()
        last_time, last_events = self._last
        if advance:
            self._last = (now, self.events)
        fresh = np.asarray(self._freshness) * 1000.0
        rate = (self.events - last_events) / (now - last_time) if now > last_time else 0.0
        return {
            "events": self.events,
            "rejected": self.rejected,
            "lists_published": self.lists,
            "processing_errors": self.errors,
            "dead_letters": self.dead_letters,
            "dead_letter_failures": self.dead_letter_failures,
            "redelivered": self.redelivered,
            "events_per_s": round(rate, 1),
            "freshness_p50_ms": round(float(np.percentile(fresh, 50)), 1) if len(fresh) else None,
            "freshness_p99_ms": round(float(np.percentile(fresh, 99)), 1) if len(fresh) else None,
            "uptime_s": round(now - self.started, 1),
            "snapshot_pause_s": _round(self.snapshot_pause_s, 3),
            "snapshot_write_s": _round(self.snapshot_write_s, 3),
            "snapshot_failures": self.snapshot_failures,
        }


def _round(value: float | None, digits: int) -> float | None:
    return None if value is None else round(value, digits)
