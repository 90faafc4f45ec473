"""From a batch of Kafka messages to Redis: decode, dead-letter, learn, recommend, publish."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from streamer import snapshot
from streamer.arms import Arms
from streamer.engine import BatchOutput, Engine, Event
from streamer.events import InvalidEvent, Validator
from streamer.handover import export_user, import_user, item_slot_keys
from streamer.publisher import RedisSink
from streamer.recommender import RecList
from streamer.settings import Settings
from streamer.snapshot import Offsets, Stamps
from streamer.stats import Stats
from streamer.sync import Sync

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


def arm_b_path(settings: Settings) -> Path:
    """Where arm b's snapshots are written (each with the same offsets as arm a's)."""
    return settings.snapshot_path / "arm-b"


class Pipeline:
    """The worker's per-batch work; Faust only feeds it batches of messages."""

    def __init__(
        self,
        settings: Settings,
        sink: RedisSink,
        send_dead_letter: DeadLetterSend,
        engine: Engine | None = None,
        offsets: Offsets | None = None,
        stamps: Stamps | None = None,
        engine_b: Engine | None = None,
    ) -> None:
        self.settings = settings
        self.sink = sink
        self.send_dead_letter = send_dead_letter
        self.engine = engine or Engine(settings)
        #: A/B arms (``STREAMREC_AB``): ``engine`` is arm a's, ``engine_b`` (or a new one) b's
        self.arms = (
            Arms(settings, settings.ab_changes(), settings.ab_share, self.engine, engine_b)
            if settings.ab
            else None
        )
        #: per topic and partition, the offset of the next message the engine has not seen:
        #: what a snapshot of the engine includes, and where a partition resumes
        self.offsets: Offsets = offsets or {}
        #: and the Kafka timestamp (ms) of the message before each: it tells the same log
        self.stamps: Stamps = stamps or {}
        self.stats = Stats()
        validator = Validator(settings)
        self._decoders: dict[str, Callable[[bytes], Event]] = {
            "clicks": validator.click,
            "contexts": validator.context,
            "items": validator.item,
        }
        self._popular_due = self._similar_due = 0.0
        self.batch_observers: list[BatchObserver] = []  # e.g. the Prometheus histograms
        self.published_observers: list[Callable[[Sequence[RecList]], None]] = []  # the lists
        self._in_batch = 0  # batches in progress (one per agent at most)
        self._snapshot_due = False
        self._stopping = False  # set by hand_over(): no more batches
        #: several workers (``STREAMREC_SYNC_INTERVAL_S``): this worker's side of the sharing
        self.sync = (
            Sync(self.engine, settings.worker_name) if settings.sync_interval_s > 0 else None
        )
        self.sync_observers: list[Callable[[float], None]] = []  # staleness of each delta applied
        #: per input partition, the users whose state changed since it was last published
        self._dirty: dict[int, set[str]] = {}
        #: partitions taken over from another worker: their users loaded, from whom, where
        #: they resumed
        self.handed_over: dict[int, dict[str, Any]] = {}
        self.users_sent_bytes = 0  # users' state published (topic_users)

    async def handle(self, kind: str, messages: Sequence[Message]) -> None:
        """Process messages of one topic kind (``clicks``, ``contexts`` or ``items``)."""
        if self._stopping:  # handing over: no batch after the last publication (the worker
            await asyncio.Event().wait()  # stops, and cancels this wait)
        self._in_batch += 1  # a snapshot asked for meanwhile waits for the batch's end
        try:
            await self._handle(kind, messages)
        finally:
            self._in_batch -= 1
            if self._snapshot_due and not self._in_batch:
                self._snapshot_due = False
                self.snapshot()

    async def handle_deltas(self, messages: Sequence[Message]) -> None:
        """Other workers' deltas (the ``sync`` topic), applied between batches; a message that
        is not a delta is logged and skipped (its offset advances)."""
        if self.sync is None:
            return
        self._in_batch += 1
        try:
            for message in messages:
                try:
                    self.sync.receive(message.value)
                except ValueError as exc:
                    where = f"{message.topic}[{message.partition}]@{message.offset}"
                    log.error("%s: %s", where, exc)
                    continue
                staleness = self.sync.last_staleness
                if staleness is not None:
                    for observe in self.sync_observers:
                        observe(staleness)
            self._advance(messages)
        finally:
            self._in_batch -= 1

    async def send_deltas(self, send: Callable[[bytes], Awaitable[Any]]) -> None:
        """This worker's learning of the shared state since the last time, sent to the
        ``sync`` topic with ``send``; what cannot be sent is logged and sent with the next."""
        if self.sync is None:
            return
        inputs = (self.settings.topic_clicks, self.settings.topic_contexts)
        positions = {(t, p): o for (t, p), o in self.positions().items() if t in inputs}
        parts = self.sync.outgoing(positions)
        for n, (_, message) in enumerate(parts):
            try:
                await send(message)
            except Exception as exc:  # the producer's error, whatever it is
                self.sync.unsent([delta for delta, _ in parts[n:]])
                log.warning("deltas not sent (again with the next): %s", exc)
                return

    async def publish_shared(
        self,
        send_delta: Callable[[bytes], Awaitable[Any]],
        send_user: Callable[[int, bytes, bytes], Awaitable[Any]],
    ) -> None:
        """Publish, at once, the state of the users touched since the last time (to their
        input partitions of the users topic) and then the shared state's deltas: a worker that
        takes a partition over resumes where both were taken (a crash between the two loses
        the last deltas' learning, never counts it twice)."""
        if self.sync is None:
            return
        dirty, self._dirty = self._dirty, {}
        slot_keys = item_slot_keys(self.engine)
        inputs = (self.settings.topic_clicks, self.settings.topic_contexts)
        for partition, users in dirty.items():
            offsets = {
                t: self.offsets[t][partition]
                for t in inputs
                if partition in self.offsets.get(t, {})
            }
            for n, user in enumerate(sorted(users)):
                state = export_user(self.engine, user, slot_keys)
                value = {"sender": self.sync.sender, "offsets": offsets, "state": state}
                data = json.dumps(value).encode()
                try:
                    await send_user(partition, user.encode("utf-8", "surrogatepass"), data)
                    self.users_sent_bytes += len(data)
                except Exception as exc:  # sent with the next publication
                    self._dirty.setdefault(partition, set()).update(sorted(users)[n:])
                    log.warning("users' state not published (again with the next): %s", exc)
                    break
        await self.send_deltas(send_delta)

    async def hand_over(
        self,
        send_delta: Callable[[bytes], Awaitable[Any]],
        send_user: Callable[[int, bytes, bytes], Awaitable[Any]],
    ) -> None:
        """A stopping worker's last word: no batch is taken after this, the batches in progress
        end, and its users' state and deltas are published, before it leaves the group (so
        that whoever takes its partitions over resumes exactly where it stopped)."""
        self._stopping = True
        while self._in_batch:
            await asyncio.sleep(0.01)
        await self.publish_shared(send_delta, send_user)

    async def take_over(
        self, partitions: set[int], read: Callable[[set[int]], Awaitable[list[Message]]]
    ) -> dict[tuple[str, int], int]:
        """Load the state of the users of ``partitions`` that another worker published last
        (``read`` returns the users topic's messages of those partitions), for each partition
        this engine is behind on; returns where each such input partition resumes. A partition
        this worker itself published last resumes from its own snapshot (exact: its events
        since are learned again)."""
        if self.sync is None or not partitions:
            return {}
        latest: dict[
            int, dict[str, Any]
        ] = {}  # partition -> newest publication's offsets and sender
        states: dict[int, dict[str, dict[str, Any]]] = {}
        for message in await read(partitions):
            try:
                value = json.loads(message.value)
                user = (message.key or b"").decode("utf-8", "surrogatepass")
                offsets, sender, state = value["offsets"], value["sender"], value["state"]
            except (ValueError, KeyError, TypeError) as exc:
                log.error(
                    "users topic %d@%d: not a user's state: %s",
                    message.partition,
                    message.offset,
                    exc,
                )
                continue
            states.setdefault(message.partition, {})[user] = state
            newest = latest.get(message.partition)
            clicks = offsets.get(self.settings.topic_clicks, 0)
            if newest is None or clicks >= newest["offsets"].get(self.settings.topic_clicks, 0):
                latest[message.partition] = {"offsets": offsets, "sender": sender}
        seeks: dict[tuple[str, int], int] = {}
        for partition, newest in latest.items():
            mine = self.offsets.get(self.settings.topic_clicks, {}).get(partition)
            published = newest["offsets"].get(self.settings.topic_clicks, 0)
            if newest["sender"] == self.sync.sender and mine is not None:
                continue  # its own: its snapshot has it
            if mine is not None and mine >= published:
                continue  # this engine is as far on
            for user, state in states[partition].items():
                import_user(self.engine, user, state)
            for topic, offset in newest["offsets"].items():
                self.offsets.setdefault(topic, {})[partition] = offset
                seeks[(topic, partition)] = offset
            self.handed_over[partition] = {
                "users": len(states[partition]),
                "from": newest["sender"],
                "offsets": newest["offsets"],
            }
            log.info(
                "partition %d: the state of %d users taken over from %s, resuming at %s",
                partition, len(states[partition]), newest["sender"], newest["offsets"],
            )  # fmt: skip
        return seeks

    def snapshot_when_idle(self) -> None:
        """A snapshot now, or at the end of the batches in progress: never between a batch's
        offsets advancing and its dead letters sent (a crash then would lose them: the
        snapshot's offsets are past the events, their letters never went out)."""
        if self._in_batch:
            self._snapshot_due = True
        else:
            self.snapshot()

    async def _handle(self, kind: str, messages: Sequence[Message]) -> None:
        started = time.perf_counter()
        decode = self._decoders[kind]
        events: list[Event] = []
        sources: list[Message] = []
        rejected = 0
        for message in messages:
            try:
                events.append(decode(message.value))
                sources.append(message)
            except InvalidEvent as exc:
                rejected += 1
                await self._dead_letter(message, str(exc))
            except Exception as exc:  # a decoder bug: still the message's dead letter, not ours
                rejected += 1
                reason = f"undecodable: {type(exc).__name__}: {str(exc)[:200]}"
                await self._dead_letter(message, reason)
        now = time.time()
        with_popular = now >= self._popular_due
        if with_popular:
            self._popular_due = now + self.settings.pop_publish_s
        with_similar = now >= self._similar_due
        if with_similar:
            self._similar_due = now + self.settings.sim_publish_s
        batch_failed = False
        learn_started = time.perf_counter()
        try:
            out = (self.arms or self.engine).process(events, with_popular, with_similar)
        except Exception:  # past the per-event stage (learning, index, recommending): log, go on
            log.exception("batch of %d events failed after they were booked", len(events))
            self.stats.errors += 1
            out = BatchOutput()
            batch_failed = True
        learn_seconds = time.perf_counter() - learn_started
        self._advance(messages)  # no await since process(): a snapshot sees both or neither
        if self.sync is not None and kind != "items":  # their users' state, to publish
            for event, source in zip(events, sources, strict=True):
                self._dirty.setdefault(source.partition, set()).add(event.user)
        for position, error in out.failed:  # one event's error is that event's dead letter
            self.stats.errors += 1
            source = sources[position]
            reason = f"processing error: {type(error).__name__}: {error}"
            await self._dead_letter(source, reason)
        progress = {
            "events": self.stats.events + len(messages),
            "rejected": self.stats.rejected + rejected,
            "model_version": self.engine.model.version,
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
        failed = len(events) if batch_failed else len(out.failed)
        self.stats.observe(
            events=len(messages),
            rejected=rejected,
            lists=len(out.lists),
            freshness_s=fresh,
            topic=kind,
            learned=len(events) - failed,
            failed=failed,
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
            parts = self.offsets.setdefault(message.topic, {})
            if message.offset + 1 > parts.get(message.partition, 0):
                parts[message.partition] = message.offset + 1
                stamps = self.stamps.setdefault(message.topic, {})
                stamps[message.partition] = round(message.timestamp * 1000)

    def positions(self) -> dict[tuple[str, int], int]:
        """Where each partition the engine has seen resumes: ``(topic, partition) -> offset``."""
        return {(t, p): o for t, parts in self.offsets.items() for p, o in parts.items()}

    def snapshot(self) -> snapshot.Snapshot:
        """Write the engine's state and the offsets it includes (see :mod:`streamer.snapshot`);
        the stream waits meanwhile (the pause is logged and reported)."""
        started = time.perf_counter()
        if self.arms is not None:  # arm b first: arm a's snapshot is the one a restart reads
            snapshot.save(
                self.arms.engines["b"],
                self.offsets,
                arm_b_path(self.settings),
                self.settings.snapshot_keep,
                self.stamps,
            )
        saved = snapshot.save(
            self.engine,
            self.offsets,
            self.settings.snapshot_path,
            self.settings.snapshot_keep,
            self.stamps,
        )
        self.stats.snapshot_pause_s = time.perf_counter() - started
        log.info("snapshot %s in %.2f s", snapshot.describe(saved), self.stats.snapshot_pause_s)
        return saved

    def model_report(self) -> dict[str, Any]:
        """The engine's prequential metrics and guards (:meth:`Engine.metrics_report`)."""
        return self.engine.metrics_report()

    def report(self, advance: bool = True) -> dict[str, Any]:
        """The worker's figures (:meth:`Stats.report`; ``advance``: the periodic report's)."""
        figures = self.stats.report(advance)
        figures["model_version"] = self.engine.model.version
        figures["catalogue"] = len(self.engine.catalogue)
        figures["users"] = len(self.engine.users)
        figures["redis_failed_writes"] = self.sink.failed_writes
        figures["redis_pending"] = self.sink.pending
        figures["redis_dropped"] = self.sink.dropped
        if self.arms is not None:
            figures["ab"] = self.arms.report()
        if self.sync is not None:
            figures["sync"] = self.sync.report()
            figures["sync"]["handed_over"] = {str(p): h for p, h in self.handed_over.items()}
            figures["sync"]["learned_clicks"] = self.stats.by_topic[("clicks", "learned")]
            figures["sync"]["users_sent_bytes"] = self.users_sent_bytes
        return figures
