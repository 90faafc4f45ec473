"""The worker in Prometheus terms (``/metrics``), and its health (``/health``, ``/ready``).

Counters are read from the pipeline's own running figures when Prometheus scrapes (one
definition of each count: :class:`streamer.stats.Stats`); the two distributions, batch time and
freshness, are observed per batch as histograms. Names follow Prometheus' conventions:
``_total`` counters, seconds. Each worker has its own registry (no module-level state).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST

if TYPE_CHECKING:
    from streamer.pipeline import Pipeline

__all__ = ["CONTENT_TYPE_LATEST", "Health", "Telemetry"]

#: Seconds from an event's production to its list in Redis.
FRESHNESS_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
BATCH_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0)

#: ``(topic, partition) -> offset``
Offsets = Mapping[tuple[str, int], int]


class Telemetry:
    """The Prometheus registry of one worker's pipeline.

    ``highwater`` gives, per assigned partition, the offset after its last message (the
    broker's high watermark as the consumer last saw it): consumer lag is that minus the
    pipeline's position.

    Examples
    --------
    >>> from streamer.stats import Stats
    >>> class Fake:  # what Telemetry reads of a pipeline
    ...     stats, offsets, batch_observers = Stats(), {"clicks": {0: 5}}, []
    ...     def report(self, advance=True): return {"catalogue": 3, "users": 2}
    ...     def model_report(self): return {"rmse": 0.9, "resets": 0}
    >>> fake = Fake()
    >>> high, done = {("clicks", 0): 8}, {("clicks", 0): 4}
    >>> t = Telemetry(fake, highwater=lambda: high, committed=lambda: done)
    >>> fake.stats.observe(events=4, rejected=1, topic="clicks", learned=3)
    >>> for observe in fake.batch_observers: observe("clicks", 0.004, 0.003, [0.02, 0.03])
    >>> text = t.exposition().decode()
    >>> 'streamrec_events_total{outcome="learned",topic="clicks"} 3.0' in text
    True
    >>> 'streamrec_consumer_lag{partition="0",topic="clicks"} 3.0' in text
    True
    >>> 'streamrec_freshness_seconds_count 2.0' in text
    True
    >>> 'streamrec_consumer_committed_offset{partition="0",topic="clicks"} 4.0' in text
    True
    """

    def __init__(
        self,
        pipeline: Pipeline | Any,
        highwater: Callable[[], Offsets] | None = None,
        committed: Callable[[], Offsets] | None = None,
    ) -> None:
        self.registry = CollectorRegistry()
        self.batch_seconds = Histogram(
            "streamrec_batch_seconds",
            "Time to process one micro-batch (decode, learn, recommend, publish)",
            ["topic"],
            buckets=BATCH_BUCKETS,
            registry=self.registry,
        )
        self.learn_seconds = Histogram(
            "streamrec_learn_seconds",
            "Time of one micro-batch's learning step (learn, refresh the index, recommend)",
            ["topic"],
            buckets=BATCH_BUCKETS,
            registry=self.registry,
        )
        self.freshness = Histogram(
            "streamrec_freshness_seconds",
            "From an event's production (its Kafka timestamp) to its user's list in Redis",
            buckets=FRESHNESS_BUCKETS,
            registry=self.registry,
        )
        self.sync_staleness = Histogram(
            "streamrec_sync_staleness_seconds",
            "From another worker's collection of a delta to its application here",
            buckets=FRESHNESS_BUCKETS,
            registry=self.registry,
        )
        self.pipeline, self.highwater = pipeline, highwater or dict
        self.registry.register(_Figures(pipeline, self.lags, committed or dict))
        pipeline.batch_observers.append(self.observe_batch)
        sharing = getattr(pipeline, "sharing", None)
        if sharing is not None:
            sharing.observers.append(self.sync_staleness.observe)

    def lags(self) -> dict[tuple[str, int], int]:
        """Per assigned partition, the messages not learned yet: its high watermark as the
        consumer last saw it minus the pipeline's position (0 where it has none)."""
        return _lags(self.highwater(), self.pipeline.offsets)

    def observe_batch(
        self, topic: str, seconds: float, learn_seconds: float, freshness_s: list[float]
    ) -> None:
        self.batch_seconds.labels(topic).observe(seconds)
        self.learn_seconds.labels(topic).observe(learn_seconds)
        for value in freshness_s:
            self.freshness.observe(value)

    def exposition(self) -> bytes:
        """The text format Prometheus scrapes."""
        return generate_latest(self.registry)


def _sync(figures: Mapping[str, Any] | None) -> Iterator[Metric]:
    """The sharing between workers (``streamer.sync``), when on."""
    if not figures:
        return
    for name, help_ in (
        ("sent", "Delta messages sent to the sync topic"),
        ("sent_bytes", "Bytes of delta messages sent"),
        ("received_bytes", "Bytes of delta messages read (every worker's)"),
        ("applied", "Other workers' delta messages applied"),
        ("dropped", "Collections not sent: events published before a restart, learned again"),
        ("rejected", "Messages of the sync topic that were not deltas"),
    ):
        yield CounterMetricFamily(f"streamrec_sync_{name}", help_, value=figures[name])


class _Figures:
    """A collector read at scrape time: the pipeline's counters and the model's figures."""

    def __init__(
        self, pipeline: Any, lags: Callable[[], Offsets], committed: Callable[[], Offsets]
    ) -> None:
        self.pipeline, self.lags, self.committed = pipeline, lags, committed

    def describe(self) -> list[Metric]:
        return []  # collected at scrape time only (not during registration)

    def collect(self) -> Iterator[Metric]:
        stats = self.pipeline.stats
        events = CounterMetricFamily(
            "streamrec_events", "Input messages by topic and outcome", labels=["topic", "outcome"]
        )
        for (topic, outcome), n in sorted(stats.by_topic.items()):
            events.add_metric([topic, outcome], n)
        yield events
        batches = CounterMetricFamily("streamrec_batches", "Micro-batches", labels=["topic"])
        for topic, n in sorted(stats.batches.items()):
            batches.add_metric([topic], n)
        yield batches
        figures = self.pipeline.report(advance=False)  # the log's rate window stays
        for name, help_, value in (
            ("lists_written", "User lists written to Redis", stats.lists),
            ("dead_letters", "Messages sent to the dead-letters topic", stats.dead_letters),
            ("dead_letter_failures", "Dead letters not sent after every retry",
             stats.dead_letter_failures),
            ("processing_errors", "Events or batches that failed after decoding", stats.errors),
            ("snapshot_failures", "Snapshots not written (logged; the last one written stands)",
             stats.snapshot_failures),
            ("redis_failed_writes", "Redis writes that failed (retried with backoff)",
             figures.get("redis_failed_writes", 0)),
            ("redis_dropped", "Keys dropped while Redis was away (past the pending bound)",
             figures.get("redis_dropped", 0)),
            ("rebalances", "Partition assignments received", stats.rebalances),
            ("fetch_restarts", "Fetches in flight through a stall, restarted on new connections",
             stats.fetch_restarts),
        ):  # fmt: skip
            yield CounterMetricFamily(f"streamrec_{name}", help_, value=value)
        yield from self._partitions()
        model = self.pipeline.model_report()
        for name, help_, value in (
            ("redis_pending_keys", "Keys waiting for Redis to come back",
             figures.get("redis_pending", 0)),
            ("catalogue_items", "Items in the catalogue", figures.get("catalogue")),
            ("users", "Users with a history kept", figures.get("users")),
            ("model_version", "Events learned by the model", figures.get("model_version")),
            ("snapshot_pause_seconds", "How long the last snapshot held the stream",
             figures.get("snapshot_pause_s")),
            ("snapshot_write_seconds", "How long the last snapshot took to write (beside the "
             "stream when the engine has a process of its own)", figures.get("snapshot_write_s")),
            ("prequential_rmse", "RMSE of ratings predicted before learning them",
             model.get("rmse")),
            ("prequential_hit_rate", "Share of positives found in the list shown before",
             model.get("hit_rate")),
            ("prequential_ndcg", "NDCG of the lists shown before each positive",
             model.get("ndcg")),
            ("list_coverage", "Share of the catalogue in the lists shown",
             model.get("coverage")),
            ("exposure_gini", "Gini of the lists' exposure over the catalogue",
             model.get("gini")),
            ("parameter_resets", "Model parameters reset by the divergence guard",
             model.get("resets")),
            ("uptime_seconds", "Seconds since the worker started", figures.get("uptime_s")),
            ("seconds_since_last_batch", "Seconds since a batch was last processed (with "
             "consumer lag: a stalled consumer)", stats.clock() - stats.last_batch),
        ):  # fmt: skip
            if value is not None:
                yield GaugeMetricFamily(f"streamrec_{name}", help_, value=float(value))
        index = GaugeMetricFamily(
            "streamrec_index_items", "Item vectors in the index", labels=["backend"]
        )
        status = getattr(self.pipeline, "status", None)  # the engine's, as of its last batch
        if status is not None:
            index.add_metric([status.index_backend], status.index_items)
        yield index
        hit_rates = GaugeMetricFamily(
            "streamrec_strategy_hit_rate",
            "Per strategy, how often the next positive was among its candidates",
            labels=["strategy"],
        )
        for name, rate in (model.get("strategies", {}).get("hit_rates") or {}).items():
            if rate is not None:
                hit_rates.add_metric([name], rate)
        yield hit_rates
        yield from _arms(figures.get("ab"))
        yield from _sync(figures.get("sync"))

    def _partitions(self) -> Iterator[Metric]:
        position = GaugeMetricFamily(
            "streamrec_consumer_position",
            "Per partition, the offset of the next message the model has not learned",
            labels=["topic", "partition"],
        )
        lag = GaugeMetricFamily(
            "streamrec_consumer_lag",
            "Per assigned partition, messages not yet learned (high watermark - position)",
            labels=["topic", "partition"],
        )
        offsets = self.pipeline.offsets
        for topic, parts in sorted(offsets.items()):
            for partition, offset in sorted(parts.items()):
                position.add_metric([topic, str(partition)], offset)
        for (topic, partition), waiting in sorted(self.lags().items()):
            lag.add_metric([topic, str(partition)], waiting)
        committed = GaugeMetricFamily(
            "streamrec_consumer_committed_offset",
            "Per assigned partition, the offset Faust last committed to the broker",
            labels=["topic", "partition"],
        )
        for (topic, partition), offset in sorted(self.committed().items()):
            committed.add_metric([topic, str(partition)], offset)
        yield position
        yield lag
        yield committed


def _arms(ab: Mapping[str, Any] | None) -> Iterator[Metric]:
    """Per A/B arm (``streamer.arms``): lists, credited clicks, users, prequential figures."""
    if not ab:
        return
    arms = ab["arms"]
    for name, help_ in (
        ("lists", "Lists published by the arm"),
        ("clicks_credited", "Clicks carrying the rec_id of the arm's list"),
    ):
        counter = CounterMetricFamily(f"streamrec_ab_{name}", help_, labels=["arm"])
        for arm, figures in arms.items():
            counter.add_metric([arm], figures[name])
        yield counter
    for name, help_ in (
        ("users", "Users of the arm seen"),
        ("hit_rate", "The arm's prequential HitRate over its own users"),
        ("ndcg", "The arm's prequential NDCG over its own users"),
        ("rmse", "The arm's prequential RMSE over its own users"),
    ):
        gauge = GaugeMetricFamily(f"streamrec_ab_{name}", help_, labels=["arm"])
        for arm, figures in arms.items():
            if figures.get(name) is not None:
                gauge.add_metric([arm], float(figures[name]))
        yield gauge


def _lags(
    highwaters: Offsets, offsets: Mapping[str, Mapping[int, int]]
) -> dict[tuple[str, int], int]:
    """``high watermark - position`` per partition, never below 0.

    >>> _lags({("clicks", 0): 8, ("clicks", 1): 3}, {"clicks": {0: 5}})
    {('clicks', 0): 3, ('clicks', 1): 3}
    """
    return {
        (topic, partition): max(0, high - offsets.get(topic, {}).get(partition, 0))
        for (topic, partition), high in highwaters.items()
    }


@dataclass(frozen=True)
class Verdict:
    ok: bool
    detail: dict[str, Any]


class Health:
    """Liveness and readiness of a worker, from facts the app hands it.

    >>> clock, lag = [100.0], [0]
    >>> h = Health(lambda: [("clicks", 0)], lambda: lag[0], lambda: True, stall_s=30,
    ...            max_lag=10, last_batch=lambda: 100.0, clock=lambda: clock[0])
    >>> h.beat(); h.live().ok, h.ready().ok
    (True, True)
    >>> clock[0] += 31; h.live().ok, h.live().detail["since_beat_s"]
    (False, 31.0)
    >>> h.beat(); h.live().ok  # the loop runs again; nothing waits, so no batch is due
    True
    >>> lag[0] = 5; h.live().ok, h.live().detail["since_batch_s"]  # messages wait, none taken
    (False, 31.0)
    """

    def __init__(
        self,
        assigned: Callable[[], list[tuple[str, int]]],
        lag: Callable[[], int],
        redis_ok: Callable[[], bool],
        stall_s: float,
        max_lag: int,
        last_batch: Callable[[], float],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.assigned, self.lag, self.redis_ok = assigned, lag, redis_ok
        self.stall_s, self.max_lag, self.clock = stall_s, max_lag, clock
        self.last_batch = last_batch  # when the pipeline last processed a batch (clock time)
        self._beat = clock()

    def beat(self) -> None:
        """The event loop ran (a timer calls this every second)."""
        self._beat = self.clock()

    def stalled_s(self) -> float:
        """How long no batch was taken while messages wait (0 if none wait)."""
        since = self.clock() - self.last_batch()
        return since if since > self.stall_s and self.lag() > 0 else 0.0

    def live(self) -> Verdict:
        """Alive: the loop ran within ``stall_s`` (a batch that holds it longer is a stall),
        and, while messages wait, a batch was taken within ``stall_s`` (a consumer that stopped
        fetching is a stall too: a restart resumes it from its snapshot)."""
        now = self.clock()
        since_beat, since_batch = round(now - self._beat, 1), round(now - self.last_batch(), 1)
        waiting = self.lag() if since_batch > self.stall_s else 0
        ok = since_beat <= self.stall_s and not waiting
        detail = {"since_beat_s": since_beat, "since_batch_s": since_batch, "waiting": waiting}
        return Verdict(ok, detail | {"stall_s": self.stall_s})

    def ready(self) -> Verdict:
        """Ready: partitions assigned, caught up within ``max_lag`` messages, Redis reachable."""
        partitions, lag, redis_ok = len(self.assigned()), self.lag(), self.redis_ok()
        detail = {"partitions": partitions, "lag": lag, "max_lag": self.max_lag, "redis": redis_ok}
        return Verdict(partitions > 0 and lag <= self.max_lag and redis_ok, detail)
