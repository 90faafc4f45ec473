"""One worker's part in several workers' one model (``STREAMREC_SYNC_INTERVAL_S``).

The deltas of the shared state out and in (``streamer.sync``), and the users' own state
published with them and taken over with their partitions (``streamer.handover``), for the
pipeline that learns this worker's batches. docs/architecture.md, "Several workers, one model".
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any

from streamer.handover import export_user, import_user, item_slot_keys
from streamer.sync import Sync

if TYPE_CHECKING:
    from streamer.pipeline import Message, Pipeline

log = logging.getLogger(__name__)

SendDelta = Callable[[bytes], Awaitable[Any]]
#: ``(partition, key, value)`` to the users topic
SendUser = Callable[[int, bytes, bytes], Awaitable[Any]]


class Sharing:
    """The pipeline's sharing with the other workers of its group (see the module)."""

    def __init__(self, pipeline: Pipeline) -> None:
        self.pipeline = pipeline
        settings = pipeline.settings
        self.sync = Sync(pipeline.engine, settings.worker_name)
        #: the input topics whose partitions hold users (keyed by user)
        self.inputs = (settings.topic_clicks, settings.topic_contexts)
        self.observers: list[Callable[[float], None]] = []  # staleness of each delta applied
        #: per input partition, the users whose state changed since it was last published
        self._dirty: dict[int, set[str]] = {}
        #: partitions taken over from another worker: their users loaded, from whom, where
        #: they resumed
        self.handed_over: dict[int, dict[str, Any]] = {}
        self.users_sent_bytes = 0  # users' state published (topic_users)

    def touched(self, users: Sequence[str], sources: Sequence[Message]) -> None:
        """The users of a batch of clicks or contexts (``sources``: their messages): their
        state is published next time."""
        for user, source in zip(users, sources, strict=True):
            self._dirty.setdefault(source.partition, set()).add(user)

    def receive(self, messages: Sequence[Message]) -> None:
        """Other workers' deltas, applied; a message that is not a delta is logged and
        skipped."""
        for message in messages:
            try:
                self.sync.receive(message.value)
            except ValueError as exc:
                where = f"{message.topic}[{message.partition}]@{message.offset}"
                log.error("%s: %s", where, exc)
                continue
            staleness = self.sync.last_staleness
            if staleness is not None:
                for observe in self.observers:
                    observe(staleness)

    async def send_deltas(self, send: SendDelta) -> None:
        """This worker's learning of the shared state since the last time, sent to the
        ``sync`` topic with ``send``; what cannot be sent is logged and sent with the next."""
        positions = {
            (t, p): o for (t, p), o in self.pipeline.positions().items() if t in self.inputs
        }
        parts = self.sync.outgoing(positions)
        for n, (_, message) in enumerate(parts):
            try:
                await send(message)
            except Exception as exc:  # the producer's error, whatever it is
                self.sync.unsent([delta for delta, _ in parts[n:]])
                log.warning("deltas not sent (again with the next): %s", exc)
                return

    async def publish(self, send_delta: SendDelta, send_user: SendUser) -> None:
        """Publish, at once, the state of the users touched since the last time (to their
        input partitions of the users topic) and then the shared state's deltas: a worker that
        takes a partition over resumes where both were taken (a crash between the two loses
        the last deltas' learning, never counts it twice); between batches, so that each
        user's state and the offsets published with it agree."""
        async with self.pipeline.turn:
            await self._publish(send_delta, send_user)

    async def _publish(self, send_delta: SendDelta, send_user: SendUser) -> None:
        engine, offsets = self.pipeline.engine, self.pipeline.offsets
        dirty, self._dirty = self._dirty, {}
        slot_keys = item_slot_keys(engine)
        for partition, users in dirty.items():
            at = {t: offsets[t][partition] for t in self.inputs if partition in offsets.get(t, {})}
            for n, user in enumerate(sorted(users)):
                state = export_user(engine, user, slot_keys)
                value = {"sender": self.sync.sender, "offsets": at, "state": state}
                data = json.dumps(value).encode()
                try:
                    await send_user(partition, user.encode("utf-8", "surrogatepass"), data)
                    self.users_sent_bytes += len(data)
                except Exception as exc:  # sent with the next publication
                    self._dirty.setdefault(partition, set()).update(sorted(users)[n:])
                    log.warning("users' state not published (again with the next): %s", exc)
                    break
        await self.send_deltas(send_delta)

    async def hand_over(self, send_delta: SendDelta, send_user: SendUser) -> None:
        """A stopping worker's last word: no batch is taken after this, the batches in progress
        end, and its users' state and deltas are published, before it leaves the group (so
        that whoever takes its partitions over resumes exactly where it stopped)."""
        await self.pipeline.pause()
        await self.publish(send_delta, send_user)

    async def take_over(
        self, partitions: set[int], read: Callable[[set[int]], Awaitable[list[Message]]]
    ) -> dict[tuple[str, int], int]:
        """Load the state of the users of ``partitions`` that another worker published last
        (``read`` returns the users topic's messages of those partitions), for each partition
        this engine is behind on; returns where each such input partition resumes. A partition
        this worker itself published last resumes from its own snapshot (exact: its events
        since are learned again)."""
        if not partitions:
            return {}
        clicks = self.pipeline.settings.topic_clicks
        offsets = self.pipeline.offsets
        latest: dict[int, dict[str, Any]] = {}  # partition -> newest publication's offsets, sender
        states: dict[int, dict[str, dict[str, Any]]] = {}
        for message in await read(partitions):
            try:
                value = json.loads(message.value)
                user = (message.key or b"").decode("utf-8", "surrogatepass")
                at, sender, state = value["offsets"], value["sender"], value["state"]
            except (ValueError, KeyError, TypeError) as exc:
                where = f"users topic {message.partition}@{message.offset}"
                log.error("%s: not a user's state: %s", where, exc)
                continue
            states.setdefault(message.partition, {})[user] = state
            newest = latest.get(message.partition)
            if newest is None or at.get(clicks, 0) >= newest["offsets"].get(clicks, 0):
                latest[message.partition] = {"offsets": at, "sender": sender}
        seeks: dict[tuple[str, int], int] = {}
        slots: dict[str, int] | None = None
        for partition, newest in latest.items():
            mine = offsets.get(clicks, {}).get(partition)
            if newest["sender"] == self.sync.sender and mine is not None:
                continue  # its own: its snapshot has it
            if mine is not None and mine >= newest["offsets"].get(clicks, 0):
                continue  # this engine is as far on
            engine = self.pipeline.engine
            slots = slots if slots is not None else engine.model.item_slots()
            for user, state in states[partition].items():
                import_user(engine, user, state, slots)
            for topic, offset in newest["offsets"].items():
                offsets.setdefault(topic, {})[partition] = offset
                seeks[(topic, partition)] = offset
            users = len(states[partition])
            self.handed_over[partition] = {
                "users": users,
                "from": newest["sender"],
                "offsets": newest["offsets"],
            }
            log.info(
                "partition %d: the state of %d users taken over from %s, resuming at %s",
                partition, users, newest["sender"], newest["offsets"],
            )  # fmt: skip
        return seeks

    def report(self) -> dict[str, Any]:
        """The sharing's figures (the worker's report, ``/metrics``)."""
        stats = self.pipeline.stats
        return {
            **self.sync.report(),
            "handed_over": {str(p): h for p, h in self.handed_over.items()},
            "learned_clicks": stats.by_topic[("clicks", "learned")],
            "users_sent_bytes": self.users_sent_bytes,
        }
