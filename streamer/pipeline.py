"""From a batch of Kafka messages to Redis: decode, dead-letter, learn, recommend, publish."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from streamer import snapshot
from streamer.engine import Engine
from streamer.forked import Written
from streamer.hosts import EngineGone, Host, LocalHost
from streamer.publisher import RedisSink
from streamer.recommender import PopList, RecList, SimList
from streamer.redelivery import LogCheck, Redeliveries, stamp_ms
from streamer.room import EngineRoom, Status
from streamer.settings import Settings
from streamer.sharing import Sharing
from streamer.snapshot import Offsets, Snapshot, Stamps
from streamer.stats import Stats

log = logging.getLogger(__name__)

DeadLetterSend = Callable[[bytes | None, bytes], Awaitable[Any]]
#: Called after each batch with its topic kind, its seconds, the seconds of its learning step
#: (the engine: learn, refresh the index, recommend) and its events' freshness.
BatchObserver = Callable[[str, float, float, list[float]], None]


@dataclass(frozen=True)
class Message:
    """What the pipeline needs of a Kafka message."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes
    timestamp: float  # seconds, when it was produced


#: Attempts to send a dead letter (0.1 s, 0.2 s... apart) before it is counted as failed.
DEAD_LETTER_ATTEMPTS = 4
#: The most raw bytes a dead letter keeps (its size stays well under the producer's 1 MB).
RAW_KEPT = 64 * 1024
#: The report timer publishes the similar-item lists batches would only once no batch ended for
#: this long: while batches run they share the due set (``Engine.similar_lists``), and the timer
#: taking 200 at once held the loop ~15 ms every report (the p99 freshness at 1,000 events/s).
QUIET_S = 1.0


def dead_letter(message: Message, reason: str) -> bytes:
    """The dead-letters payload: why, where from, and the raw bytes (base64 and as text; the
    first ``RAW_KEPT`` bytes of a larger message, with its size).

    >>> m = Message("clicks", 2, 17, b"u1", b"\\xff{", 0.0)
    >>> d = json.loads(dead_letter(m, "not JSON"))
    >>> d["reason"], d["topic"], d["offset"], base64.b64decode(d["raw_base64"])
    ('not JSON', 'clicks', 17, b'\\xff{')
    """
    raw = message.value if isinstance(message.value, bytes) else bytes(message.value or b"")
    record = {
        "reason": reason,
        "topic": message.topic,
        "partition": message.partition,
        "offset": message.offset,
        "key": message.key[:1024].decode("utf-8", "replace") if message.key else None,
        "raw_size": len(raw),
        "raw_base64": base64.b64encode(raw[:RAW_KEPT]).decode(),
        "raw_text": raw[:2000].decode("utf-8", "replace"),
        "failed_ts": time.time(),
    }
    return json.dumps(record).encode()


class _Every:
    """Something done at most once every ``period`` seconds.

    >>> every = _Every(10.0)
    >>> every.claim(100.0), every.claim(105.0), every.claim(110.0)
    (True, False, True)
    """

    def __init__(self, period: float) -> None:
        self.period = period
        self._next = 0.0

    def claim(self, now: float) -> bool:
        """Whether it is due at ``now``; if so, the next time is ``period`` from now."""
        if now < self._next:
            return False
        self._next = now + self.period
        return True


class Pipeline:
    """The worker's per-batch work; Faust only feeds it batches of messages. The engine is
    asked through its ``host`` (``streamer.hosts``): in this process by default (``engine``,
    ``engine_b``: arm a's and arm b's to start from), or in one of its own."""

    def __init__(
        self,
        settings: Settings,
        sink: RedisSink,
        send_dead_letter: DeadLetterSend,
        engine: Engine | None = None,
        offsets: Offsets | None = None,
        stamps: Stamps | None = None,
        engine_b: Engine | None = None,
        log_check: LogCheck | None = None,
        host: Host | None = None,
    ) -> None:
        self.settings = settings
        self.sink = sink
        self.send_dead_letter = send_dead_letter
        self.host: Host = host or LocalHost(EngineRoom(settings, engine, engine_b))
        #: the engine's running figures, as of its last batch
        self.status: Status = self.host.ask(EngineRoom.status)
        #: per topic and partition, the offset of the next message the engine has not seen:
        #: what a snapshot of the engine includes, and where a partition resumes
        self.offsets: Offsets = offsets or {}
        #: and the Kafka timestamp (ms) of the message before each: it tells the same log
        self.stamps: Stamps = stamps or {}
        #: messages delivered again after a rebalance, learned already: not learned twice
        #: (``log_check``: asked when they come from further back than the last remembered)
        self.redeliveries = Redeliveries(self._position, self._stamp, log_check)
        self.stats = Stats()
        #: popular and similar lists go out with a batch at most this often
        self._popular_every, self._similar_every = (
            _Every(settings.pop_publish_s),
            _Every(settings.sim_publish_s),
        )
        #: the engine's positives learned when its popular lists were last published
        self._popular_at = -1
        self.batch_observers: list[BatchObserver] = []  # e.g. the Prometheus histograms
        self.published_observers: list[Callable[[Sequence[RecList]], None]] = []  # the lists
        self._in_batch = 0  # batches in progress (one per agent at most)
        #: one batch or one publication of the users' state at a time: nothing reads the
        #: engine and its offsets between a batch's offsets advancing and its dead letters
        #: sent (a crash then resumes before the batch: its failures are dead-lettered again)
        self.turn = asyncio.Lock()
        self._snapshot_due = False
        self._writing: Snapshot | None = None  # the snapshot being written apart
        self._stopping = False  # set by pause(): no more batches
        self.stopped = False  # the final snapshot taken (final_snapshot)
        #: several workers (``STREAMREC_SYNC_INTERVAL_S``): this worker's part in the sharing
        self.sharing = Sharing(self) if settings.sync_interval_s > 0 else None

    @property
    def engine(self) -> Engine:
        """The engine, when it is in this process (arm a's with arms)."""
        if not isinstance(self.host, LocalHost):
            raise AttributeError("the engine is in a process of its own: ask self.host")
        return self.host.room.engine

    async def handle(self, kind: str, messages: Sequence[Message]) -> None:
        """Process messages of one topic kind (``clicks``, ``contexts`` or ``items``)."""
        if self._stopping:  # handing over: no batch after the last publication (the worker
            await asyncio.Event().wait()  # stops, and cancels this wait)
        self._in_batch += 1  # a snapshot asked for meanwhile waits for the batch's end
        try:
            async with self.turn:
                await self._handle(kind, messages)
        finally:
            self._in_batch -= 1
            if self._snapshot_due and not self._in_batch:
                self._snapshot_due = False
                self.periodic_snapshot()

    async def handle_deltas(self, messages: Sequence[Message]) -> None:
        """Other workers' deltas (the ``sync`` topic), applied between batches
        (:meth:`Sharing.receive`); their offsets advance."""
        if self.sharing is None:
            return
        self._in_batch += 1
        try:
            self.sharing.receive(messages)
            self._advance(messages)
            self.status = self.host.ask(EngineRoom.status)  # (what they taught it)
        finally:
            self._in_batch -= 1

    def stale_popular(self) -> list[PopList]:
        """The popular lists, if the engine learned positives since they were last published
        (once every ``pop_publish_s`` by a batch: a stream that goes quiet before the next is
        due would leave them unpublished; the worker's report timer writes these)."""
        if self.status.interactions == self._popular_at:
            return []
        self._popular_at = self.status.interactions
        return self.host.ask(EngineRoom.popular_lists)

    def stale_similar(self) -> list[SimList]:
        """The similar-item lists a batch would publish now (:meth:`Engine.similar_lists`):
        items chosen since their lists were last due, once ``sim_publish_s`` has passed, and
        those still waiting from a due set larger than a batch computes. Lists go out with
        batches; a stream that goes quiet would leave these unpublished until its next batch
        (the worker's report timer writes them, once no batch ended for ``QUIET_S``)."""
        if self.stats.clock() - self.stats.last_batch < QUIET_S:  # the batches publish them
            return []
        return self.host.ask(EngineRoom.similar_lists, self._similar_every.claim(time.time()))

    async def pause(self) -> None:
        """Take no batch from now on (a worker handing its partitions over), once the batches
        in progress have ended."""
        self._stopping = True
        while self._in_batch:
            await asyncio.sleep(0.01)

    async def stop(self) -> None:
        """The worker stops: no batch from now on (those in progress end first), then the
        final snapshot (:meth:`final_snapshot`)."""
        await self.pause()
        self.final_snapshot()

    def final_snapshot(self) -> None:
        """The last snapshot of this pipeline's life (snapshots on); :attr:`stopped` after."""
        if self.settings.snapshot_interval_s > 0:
            self.snapshot()
        self.stopped = True

    def snapshot_when_idle(self) -> None:
        """A snapshot now, or at the end of the batches in progress: never between a batch's
        offsets advancing and its dead letters sent (a crash then would lose them: the
        snapshot's offsets are past the events, their letters never went out)."""
        if self._in_batch:
            self._snapshot_due = True
        else:
            self.periodic_snapshot()

    def periodic_snapshot(self) -> None:
        """A snapshot between batches: written apart, by a fork of the engine's process
        (:mod:`streamer.forked`), when the engine has a process of its own (the stream waits
        for the fork only); else here and now (:meth:`snapshot`)."""
        if isinstance(self.host, LocalHost):
            self.snapshot()
            return
        started = time.perf_counter()
        try:
            begun, written = self.host.ask(EngineRoom.snapshot_apart, self.offsets, self.stamps)
        except EngineGone:
            raise
        except Exception:
            self.stats.snapshot_failures += 1
            log.exception("snapshot not begun; the last one written stands")
            return
        self._written(written)
        if begun is None:
            log.warning("the last snapshot is still being written: none begun now")
            return
        self.stats.snapshot_pause_s = time.perf_counter() - started
        self._writing = begun
        log.info("snapshot %s begun apart", begun.path.name)

    def _written(self, written: Written | None) -> None:
        """The outcome of the snapshot written apart, once told (logged and counted)."""
        if written is None or self._writing is None:
            return
        begun, self._writing = self._writing, None
        self.stats.snapshot_write_s = written.seconds
        if written.ok:
            log.info("snapshot %s written in %.2f s", snapshot.describe(begun), written.seconds)
        else:
            self.stats.snapshot_failures += 1
            log.error(
                "snapshot %s not written (the engine's log says why); the last one written "
                "stands", begun.path.name,
            )  # fmt: skip

    async def _handle(self, kind: str, messages: Sequence[Message]) -> None:
        started = time.perf_counter()
        again = await self.redeliveries.learned(messages)
        new = [m for m in messages if id(m) not in again] if again else list(messages)
        redelivered = len(messages) - len(new)
        now = time.time()
        with_popular = self._popular_every.claim(now)
        with_similar = self._similar_every.claim(now)
        learn_started = time.perf_counter()
        done = await self.host.call(
            EngineRoom.process, kind, [m.value for m in new], with_popular, with_similar
        )
        learn_seconds = time.perf_counter() - learn_started
        self.status, out = done.status, done.out
        self._written(done.written)
        if with_popular and not done.failed:
            self._popular_at = done.status.interactions
        # no await since the engine answered: a snapshot sees both or neither
        self._advance(messages)
        refused = {position for position, _ in done.rejected}
        sources = [m for position, m in enumerate(new) if position not in refused]
        if self.sharing is not None and kind != "items":  # their users' state, to publish
            self.sharing.touched(done.users, sources)
        for position, reason in done.rejected:
            await self._dead_letter(new[position], reason)
        if done.failed:
            self.stats.errors += 1
        for position, error in out.failed:  # one event's error is that event's dead letter
            self.stats.errors += 1
            source = sources[position]
            reason = f"processing error: {type(error).__name__}: {error}"
            await self._dead_letter(source, reason)
        rejected = len(done.rejected)
        progress = {
            "events": self.stats.events + len(messages),
            "rejected": self.stats.rejected + rejected,
            "model_version": done.status.model_version,
            "ts": now,
        }
        published = self.sink.write(
            out.lists, out.popular, extra={"progress": progress}, similar=out.similar
        )
        for observe_lists in self.published_observers:
            observe_lists(out.lists)
        # None: Redis was not reached; the sink keeps the lists until it is back
        fresh = (
            [] if published is None else [published - m.timestamp for m in sources if m.timestamp]
        )
        failed = len(sources) if done.failed else len(out.failed)
        self.stats.observe(
            events=len(messages),
            rejected=rejected,
            lists=len(out.lists),
            freshness_s=fresh,
            topic=kind,
            learned=len(sources) - failed,
            failed=failed,
            redelivered=redelivered,
        )
        seconds = time.perf_counter() - started
        for observe in self.batch_observers:
            observe(kind, seconds, learn_seconds, fresh)

    async def _dead_letter(self, message: Message, reason: str) -> None:
        """Send ``message``'s dead letter, retried with backoff; a letter that cannot be sent
        is logged with where the message is and counted, never dropped silently."""
        letter = dead_letter(message, reason)
        for attempt in range(DEAD_LETTER_ATTEMPTS):
            try:
                await self.send_dead_letter(message.key, letter)
                self.stats.dead_letters += 1
                return
            except Exception as exc:  # the producer's error, whatever it is
                if attempt + 1 == DEAD_LETTER_ATTEMPTS:
                    self.stats.dead_letter_failures += 1
                    log.error(
                        "dead letter of %s[%d]@%d not sent (%s): %s",
                        message.topic, message.partition, message.offset, exc, reason,
                    )  # fmt: skip
                    return
                await asyncio.sleep(0.1 * 2**attempt)

    def _advance(self, messages: Sequence[Message]) -> None:
        for message in messages:
            stamp = stamp_ms(message)
            self.redeliveries.add(message, stamp)
            parts = self.offsets.setdefault(message.topic, {})
            if message.offset + 1 > parts.get(message.partition, 0):
                parts[message.partition] = message.offset + 1
                self.stamps.setdefault(message.topic, {})[message.partition] = stamp

    def _position(self, topic: str, partition: int) -> int:
        return self.offsets.get(topic, {}).get(partition, 0)

    def _stamp(self, topic: str, partition: int) -> int | None:
        """The Kafka timestamp (ms) of the last message learned of ``topic[partition]``."""
        return self.stamps.get(topic, {}).get(partition)

    def positions(self) -> dict[tuple[str, int], int]:
        """Where each partition the engine has seen resumes: ``(topic, partition) -> offset``."""
        return {(t, p): o for t, parts in self.offsets.items() for p, o in parts.items()}

    def snapshot(self) -> Snapshot | None:
        """Write the engine's state and the offsets it includes (see :mod:`streamer.snapshot`);
        the stream waits meanwhile (the pause is logged and reported). A snapshot that cannot
        be written (a full disk, a directory gone) is logged and counted, and the stream goes
        on: the last one written stands, and the next may succeed. None then."""
        try:
            return self._snapshot()
        except Exception:
            self.stats.snapshot_failures += 1
            log.exception("snapshot not written; the last one written stands")
            return None

    def _snapshot(self) -> Snapshot:
        started = time.perf_counter()
        saved = self.host.ask(EngineRoom.snapshot, self.offsets, self.stamps)
        self.stats.snapshot_pause_s = self.stats.snapshot_write_s = time.perf_counter() - started
        log.info("snapshot %s in %.2f s", snapshot.describe(saved), self.stats.snapshot_pause_s)
        return saved

    def model_report(self) -> dict[str, Any]:
        """The engine's prequential metrics and guards (:meth:`EngineRoom.metrics`)."""
        return self.host.ask(EngineRoom.metrics)

    def report(self, advance: bool = True) -> dict[str, Any]:
        """The worker's figures (:meth:`Stats.report`; ``advance``: the periodic report's)."""
        figures = self.stats.report(advance)
        figures["model_version"] = self.status.model_version
        figures["catalogue"] = self.status.catalogue
        figures["users"] = self.status.users
        figures["redis_failed_writes"] = self.sink.failed_writes
        figures["redis_pending"] = self.sink.pending
        figures["redis_dropped"] = self.sink.dropped
        if self.settings.ab:
            figures["ab"] = self.host.ask(EngineRoom.ab_report)
        if self.sharing is not None:
            figures["sync"] = self.sharing.report()
        return figures
