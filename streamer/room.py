"""The engine and everything the worker asks of it, behind one door.

The worker's :class:`~streamer.pipeline.Pipeline` faces Kafka and Redis: redeliveries,
offsets, dead letters, the lists' writes. What it asks of the engine goes through an
:class:`EngineRoom`: a batch of raw message values to decode and learn (:meth:`process`), a
snapshot, the figures it reports, what the web pages show. Every answer is plain data (lists,
dicts, small dataclasses), so the room can live in the worker's process or in a process of its
own (``streamer.hosts``): there the engine's Python runs beside Faust's instead of taking
turns with it for one interpreter lock.

Examples
--------
>>> room = EngineRoom(Settings(n_factors=4, top_k=2))
>>> done = room.process("items", [b'{"item": "a", "tags": ["x"]}', b'{"item": "b"}'])
>>> done = room.process("clicks", [b'{"user": "u", "item": "a", "ts": 1}', b"not json"])
>>> done.rejected, done.users, [r.user for r in done.out.lists]
([(1, 'not JSON: Expecting value: line 1 column 1 (char 0)')], ['u'], ['u'])
>>> room.status().interactions, room.user_state("u")
(1, {'items': 1, 'known': True})
"""

from __future__ import annotations

import gc
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from streamer import snapshot
from streamer.arms import Arms
from streamer.engine import BatchOutput, Engine, Event
from streamer.evaluation.prequential import metrics_report, scoreboard, watched
from streamer.events import InvalidEvent, Validator
from streamer.features import user_feature
from streamer.forked import Forked, Written
from streamer.memory import release_free_memory
from streamer.recommender import PopList, SimList
from streamer.settings import Settings
from streamer.snapshot import Offsets, Snapshot, Stamps

log = logging.getLogger(__name__)
#: The users :meth:`EngineRoom.item_state` names (it counts them all).
SHOWN_TO_LISTED = 100


@dataclass(frozen=True)
class Status:
    """The engine's running figures the worker reports, as of its last batch."""

    interactions: int = 0  # positives learned (``Engine.interactions``)
    model_version: int = 0
    catalogue: int = 0  # items known
    users: int = 0  # users with a history
    index_backend: str = ""
    index_items: int = 0


@dataclass
class Processed:
    """What a batch gave: the lists to publish, and what could not be learned."""

    out: BatchOutput
    status: Status
    #: ``(position, reason)`` of the values that are not valid events (dead letters)
    rejected: list[tuple[int, str]] = field(default_factory=list)
    #: the user of each valid event, in order ("" for an item's metadata)
    users: list[str] = field(default_factory=list)
    #: the batch failed past the per-event stage (learning, the index, the lists): logged
    failed: bool = False
    #: how the snapshot being written apart ended, if it did since the last answer
    written: Written | None = None


def arm_b_path(settings: Settings) -> Path:
    """Where arm b's snapshots are written (each with the same offsets as arm a's)."""
    return settings.snapshot_path / "arm-b"


class EngineRoom:
    """The engine (and arm b's, with ``STREAMREC_AB``), with what the worker asks of them."""

    def __init__(
        self, settings: Settings, engine: Engine | None = None, engine_b: Engine | None = None
    ) -> None:
        self.settings = settings
        self.engine, self.arms = self._housed(engine, engine_b)
        self._decoders = Validator(settings).decoders()
        self._writer = Forked()  # snapshots written apart (snapshot_apart)
        self._written: Written | None = None  # how the last one ended, not told yet

    def _housed(self, engine: Engine | None, engine_b: Engine | None) -> tuple[Engine, Arms | None]:
        """``engine`` (or a new one) with its prequential scoreboard, and with
        ``STREAMREC_AB`` the arms: ``engine`` arm a's, ``engine_b`` (or a new one) b's."""
        settings = self.settings
        engine = watched(engine or Engine(settings))
        if not settings.ab:
            return engine, None
        return engine, Arms(settings, settings.ab_changes(), settings.ab_share, engine, engine_b)

    # -- the stream ---------------------------------------------------------------------------

    def process(
        self,
        kind: str,
        values: Sequence[bytes],
        with_popular: bool = False,
        with_similar: bool = False,
    ) -> Processed:
        """Decode ``values`` (messages of the ``kind`` topic), learn the valid ones in order,
        and return the lists to publish. An invalid value is rejected with its reason; an
        event that fails is in ``out.failed`` (its position among the valid ones)."""
        decode = self._decoders[kind]
        events: list[Event] = []
        rejected: list[tuple[int, str]] = []
        for position, value in enumerate(values):
            try:
                events.append(decode(value))
            except InvalidEvent as exc:
                rejected.append((position, str(exc)))
            except Exception as exc:  # a decoder bug: still the message's dead letter
                rejected.append((position, f"undecodable: {type(exc).__name__}: {str(exc)[:200]}"))
        failed = False
        try:
            out = (self.arms or self.engine).process(events, with_popular, with_similar)
        except Exception:  # past the per-event stage (learning, index, recommending): log, go on
            log.exception("batch of %d events failed after they were booked", len(events))
            out, failed = BatchOutput(), True
        users = [getattr(event, "user", "") for event in events]
        return Processed(out, self.status(), rejected, users, failed, self._told(wait=False))

    def status(self) -> Status:
        engine = self.engine
        return Status(
            engine.interactions,
            engine.model.version,
            len(engine.catalogue),
            len(engine.users),
            type(engine.index).__name__,
            len(engine.index),
        )

    def popular_lists(self) -> list[PopList]:
        return self.engine.recommender.popular_lists()

    def similar_lists(self, due: bool) -> list[SimList]:
        """:meth:`Engine.similar_lists`."""
        return self.engine.similar_lists(due)

    # -- state --------------------------------------------------------------------------------

    def restore(self) -> Snapshot | None:
        """The newest valid snapshot's engine (and arm b's at the same offsets), in place of
        this room's; what it says (its offsets), or None when there is none."""
        found = snapshot.load_latest(self.settings.snapshot_path, self.settings)
        if found is None:
            return None
        engine, saved = found
        engine_b = self._arm_b(saved) if self.settings.ab else None
        self.engine, self.arms = self._housed(engine, engine_b)
        return saved

    def keep_restored(self) -> None:
        """The restored state is kept (its log is the broker's): it lives as long as the
        worker, out of the cyclic collector's walks from now (the load made it with the
        collector paused, so its first collections would otherwise walk all of it, in the
        first batches)."""
        gc.freeze()

    def start_afresh(self) -> None:
        """A new engine (the restored one learned from another log than the broker's)."""
        self.engine, self.arms = self._housed(None, None)

    def _arm_b(self, saved: Snapshot) -> Engine | None:
        """Arm b's engine from its snapshot at the same offsets as arm a's; None (a new arm b,
        logged) if there is none, e.g. when the arms were just turned on or arm b changed."""
        settings = self.settings
        found = snapshot.load_matching(
            arm_b_path(settings), replace(settings, **settings.ab_changes()), saved.offsets
        )
        if found is None:
            log.warning("no snapshot of arm b at the offsets of %s: a new arm b", saved.path)
            return None
        log.info("arm b resumes from snapshot %s", snapshot.describe(found[1]))
        return found[0]

    def snapshot(self, offsets: Offsets, stamps: Stamps) -> Snapshot:
        """Write the engines' state with the ``offsets`` (and ``stamps``) it includes, here
        and now (once a snapshot being written apart has ended: its outcome is told with the
        next answer that tells one)."""
        self._written = self._told(wait=True)
        keep = self.settings.snapshot_keep
        saved = [snapshot.save(e, offsets, d, keep, stamps) for e, d in self._engines()]
        release_free_memory()  # the snapshot's buffers, back to the system (streamer.memory)
        return saved[-1]

    def snapshot_apart(
        self, offsets: Offsets, stamps: Stamps
    ) -> tuple[Snapshot | None, Written | None]:
        """Begin a snapshot written by a fork of this process (:mod:`streamer.forked`) while
        this one goes on learning: the snapshot it will be (None, and nothing begun, while the
        last one is still being written), and how the last one ended if it did since told."""
        written = self._told(wait=False)
        if self._writer.busy:
            return None, written
        keep = self.settings.snapshot_keep
        plan = [  # the index's vectors read here: the copy must not take the index's locks
            (engine, directory, engine.index.all_items(), snapshot.next_path(directory))
            for engine, directory in self._engines()
        ]

        def write() -> None:
            for engine, directory, items, path in plan:
                snapshot.save(engine, offsets, directory, keep, stamps, items=items, path=path)

        self._writer.begin(write)
        engine, _, _, path = plan[-1]
        return Snapshot(path, offsets, engine.events, time.time(), stamps), written

    def _engines(self) -> list[tuple[Engine, Path]]:
        """Each engine and where its snapshots go: arm b's first (arm a's snapshot, the last
        written, is the one a restart reads)."""
        arm_b = [] if self.arms is None else [(self.arms.engines["b"], arm_b_path(self.settings))]
        return [*arm_b, (self.engine, self.settings.snapshot_path)]

    def _told(self, wait: bool) -> Written | None:
        """How the snapshot written apart ended, if it did and was not told yet."""
        written, self._written = self._written, None
        return self._writer.done(wait) or written

    # -- what the worker reports and shows -----------------------------------------------------

    def metrics(self) -> dict[str, Any]:
        """The engine's prequential metrics and guards (:func:`metrics_report`)."""
        return metrics_report(self.engine)

    def ab_report(self) -> dict[str, Any] | None:
        """The arms' figures (:meth:`Arms.report`), None without arms."""
        return None if self.arms is None else self.arms.report()

    def user_state(self, user: str) -> dict[str, Any]:
        """What the engine holds of ``user``: how many items in their history, whether the
        model knows their id."""
        engine = self.engine
        return {
            "items": len(engine.users.history(user)),
            "known": engine.model.knows(user_feature(user)),
        }

    def item_state(self, item: str) -> dict[str, Any]:
        """What the engine holds of ``item``: its tags, the users whose last list shows it (the
        first ``SHOWN_TO_LISTED``, and how many), and its vector as the index holds it
        (``[b_i, e_i]``, no prior)."""
        engine = self.engine
        if item not in engine.catalogue:
            return {"known": False, "tags": [], "shown_to": [], "shown_to_users": 0, "vector": []}
        wanted = engine.catalogue.id_of(item)
        shown_to = [u for u, shown in engine.shown.items() if wanted in shown]
        return {
            "known": True,
            "tags": list(engine.catalogue.tags.get(wanted, ())),
            "shown_to": shown_to[:SHOWN_TO_LISTED],
            "shown_to_users": len(shown_to),
            "vector": engine.model.item_vectors([engine.catalogue.features(wanted)])[0].tolist(),
        }

    def exposure(self) -> np.ndarray:
        """How many lists showed each item shown so far (the dashboard's Lorenz curve)."""
        return np.fromiter(scoreboard(self.engine).audit.counts.values(), float)
