"""Several workers, one model: what each learns of the shared state, published to the others.

Clicks are split between the workers of a consumer group by partition, so by user. What is
learned about a user (the rows of its ``user=`` feature, its history) stays with the worker
that owns the user; everything else is shared: the factorization machines' rows of items,
tags, words, contexts and previous items, and their intercepts; and what every positive
teaches beyond its user (item-kNN co-occurrences, popularity in context, the negative
sampler's items, the fresh-items counts: :meth:`Engine.learn_shared`).

Each worker learns its own events as one worker would and, every ``sync_interval_s``,
:meth:`Sync.collect` gathers what it learned of the shared state since the last time: the
changes of the model's shared rows (current minus last shared: ``ParameterTable.changes``) and
its positives (item, context bucket, the user's recent items, by name). The other workers
:meth:`Sync.apply` them: the parameter changes are *added* (a row new to a worker starts, keyed
by its name, where the sender's started, so it ends where the sender's is), the positives are
learned. So the shared parameters are the sum of every worker's steps, each taken on slightly
stale parameters (by at most the sync interval and the transport's delay), as in asynchronous
SGD with delayed updates (Hogwild-like); the counts are exact up to that delay. Changes of
busy rows are metered (:data:`DENSE`), what is not sent yet stays with the sender.

Deltas travel as numpy arrays in ``.npz`` bytes (no pickle), the changes as float32; what the
rounding leaves out stays with the sender too, so quiet rows end equal everywhere.
"""

from __future__ import annotations

import io
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from streamer.engine import Engine
from streamer.features import USER_PREFIX
from streamer.model.fast_fm import FastFMClassifier, FastFMRegressor
from streamer.strategies.base import Observation

#: Feature keys that belong to one user: learned and kept by the user's worker only.
OWN_PREFIX = USER_PREFIX
#: The factorization machines whose shared rows travel, by name.
TABLES = ("ranker", "rater")
#: A row's change of more learning steps than this since the last collection is sent scaled
#: down to this many steps' worth; the rest stays to be sent with the next collections (all of
#: it once the row is quiet: eventually every change reaches every worker). Changes of rows
#: stepped on every event (the intercepts, frequent context features), added up whole from
#: several workers that each took their steps on parameters a sync interval old, overshoot
#: (delayed gradients: a gain of about ``lr * steps * curvature`` per interval; MovieLens'
#: first 11,682 events on 2 workers synced every 1,000 events: the ranker's intercept at -26,
#: ``python -m benchmarks.workers ... --limit 11682 --unscaled``); metered, they do not.
DENSE = 16
#: At most this many bytes in one message (the producer's and the broker's default limit is
#: 1 MB): a larger delta travels in parts.
MAX_BYTES = 900_000


@dataclass
class TableDelta:
    """The changes of one factorization machine's shared rows, and of its intercept."""

    keys: list[str]
    weights: np.ndarray  # (n,) float32
    latents: np.ndarray  # (n, k) float32
    intercept: float = 0.0

    def part(self, rows: slice, first: bool) -> TableDelta:
        """Rows ``rows`` (the intercept's change in the ``first`` part only)."""
        intercept = self.intercept if first else 0.0
        return TableDelta(self.keys[rows], self.weights[rows], self.latents[rows], intercept)


@dataclass
class Delta:
    """What one worker learned of the shared state between two collections."""

    sender: str
    seq: int
    created: float  # wall-clock seconds when it was collected
    version: int  # the sender's model version then (interactions learned from its own events)
    tables: dict[str, TableDelta] = field(default_factory=dict)
    #: positives: (item, context bucket, the user's recent items before it), by name
    positives: list[tuple[str, str, list[str]]] = field(default_factory=list)
    run: str = ""  # the sender's process (a worker restarted is a new run of the same sender)
    #: the sender's position in each of its input partitions ``(topic, partition)`` then: the
    #: events this delta's learning comes from are before them
    positions: dict[tuple[str, int], int] = field(default_factory=dict)

    def encode(self) -> bytes:
        """The delta as ``.npz`` bytes (strings as unicode arrays: no pickle).

        >>> d = Delta("w1", 3, 10.0, 7, {"ranker": TableDelta(["item=a"], np.ones(1),
        ...     np.ones((1, 2)), intercept=0.5)}, [("a", "", ["b", "c"]), ("b", "device=tv", [])])
        >>> back = Delta.decode(d.encode())
        >>> back.sender, back.seq, back.tables["ranker"].keys, back.positives
        ('w1', 3, ['item=a'], [('a', '', ['b', 'c']), ('b', 'device=tv', [])])
        """
        names: dict[str, int] = {}

        def code(name: str) -> int:
            return names.setdefault(name, len(names))

        items = [code(item) for item, _, _ in self.positives]
        buckets = [code(bucket) for _, bucket, _ in self.positives]
        recent = [code(other) for _, _, before in self.positives for other in before]
        starts = np.cumsum([0, *(len(before) for _, _, before in self.positives)])
        arrays: dict[str, np.ndarray] = {
            "meta": np.array(
                [self.sender, str(self.seq), repr(self.created), str(self.version), self.run]
            ),
            "names": _strings(list(names)),
            "items": np.array(items, np.int32),
            "buckets": np.array(buckets, np.int32),
            "recent": np.array(recent, np.int32),
            "starts": starts.astype(np.int64),
            "position_topics": _strings([t for t, _ in self.positions]),
            "positions": np.array(
                [[p, o] for (_, p), o in self.positions.items()], np.int64
            ).reshape(-1, 2),
        }
        for name, table in self.tables.items():
            arrays[f"{name}.keys"] = _strings(table.keys)
            arrays[f"{name}.weights"] = np.asarray(table.weights, np.float32)
            arrays[f"{name}.latents"] = np.asarray(table.latents, np.float32)
            arrays[f"{name}.intercept"] = np.array([table.intercept])
        out = io.BytesIO()
        np.savez(out, **arrays)  # type: ignore[arg-type]
        return out.getvalue()

    @classmethod
    def decode(cls, data: bytes) -> Delta:
        """A delta from :meth:`encode`'s bytes (``ValueError`` if they are not one)."""
        try:
            with np.load(io.BytesIO(data), allow_pickle=False) as f:
                arrays = {name: f[name] for name in f.files}
            sender, seq, created, version, run = arrays["meta"].tolist()
            names = _unstrings(arrays["names"])
            starts = arrays["starts"].tolist()
            recent = [names[i] for i in arrays["recent"].tolist()]
            positives = [
                (names[item], names[bucket], recent[starts[n] : starts[n + 1]])
                for n, (item, bucket) in enumerate(
                    zip(arrays["items"].tolist(), arrays["buckets"].tolist(), strict=True)
                )
            ]
            tables = {
                name: TableDelta(
                    _unstrings(arrays[f"{name}.keys"]),
                    arrays[f"{name}.weights"],
                    arrays[f"{name}.latents"],
                    float(arrays[f"{name}.intercept"][0]),
                )
                for name in TABLES
                if f"{name}.keys" in arrays
            }
            topics = _unstrings(arrays["position_topics"])
            positions = {
                (t, int(p)): int(o)
                for t, (p, o) in zip(topics, arrays["positions"].tolist(), strict=True)
            }
            return cls(
                sender, int(seq), float(created), int(version), tables, positives, run, positions
            )
        except Exception as exc:  # not an npz, or not a delta's arrays
            raise ValueError(f"not a streamrec delta: {type(exc).__name__}: {exc}") from exc

    def parts(self, size: int) -> list[Delta]:
        """The delta cut into deltas of at most ``size`` rows per table and ``size``
        positives (the intercepts' changes in the first), numbered ``seq, seq + 1, ...``."""
        longest = max([len(self.positives), *(len(t.keys) for t in self.tables.values())])
        out = []
        for n, at in enumerate(range(0, max(longest, 1), size)):
            part = slice(at, at + size)
            tables = {name: t.part(part, n == 0) for name, t in self.tables.items()}
            seq, positives = self.seq + n, self.positives[part]
            out.append(replace(self, seq=seq, tables=tables, positives=positives))
        return out

    def messages(self, limit: int = MAX_BYTES) -> list[tuple[Delta, bytes]]:
        """The delta in parts of at most ``limit`` bytes each, encoded (parts numbered from
        its ``seq``).

        >>> keys = [f"word={n:05d}" for n in range(3000)]
        >>> table = TableDelta(keys, np.ones(3000), np.ones((3000, 4)))
        >>> d = Delta("w", 0, 0.0, 1, {"ranker": table})
        >>> parts = d.messages(limit=40_000)
        >>> len(parts) > 1 and all(len(m) <= 40_000 for _, m in parts)
        True
        >>> sum(len(p.tables["ranker"].keys) for p, _ in parts), [p.seq for p, _ in parts][:3]
        (3000, [0, 1, 2])
        """
        whole = self.encode()
        pieces = -(-len(whole) // limit)
        if pieces <= 1:
            return [(self, whole)]
        longest = max([len(self.positives), *(len(t.keys) for t in self.tables.values())])
        out = [(part, part.encode()) for part in self.parts(-(-longest // pieces))]
        if any(len(m) > limit for _, m in out):  # unevenly sized rows: finer parts
            out = [(part, part.encode()) for part in self.parts(-(-longest // (2 * pieces)))]
        return out


def _strings(values: Sequence[str]) -> np.ndarray:
    """Strings as one array of their UTF-8 bytes, each preceded by its length (4 bytes, little
    endian); lone surrogates in ids are kept (``surrogatepass``)."""
    encoded = [v.encode("utf-8", "surrogatepass") for v in values]
    out = bytearray()
    for e in encoded:
        out += len(e).to_bytes(4, "little") + e
    return np.frombuffer(bytes(out), np.uint8)


def _unstrings(array: np.ndarray) -> list[str]:
    """:func:`_strings` back.

    >>> _unstrings(_strings(["a", "", "\\ud800x", "é"]))
    ['a', '', '\\ud800x', 'é']
    """
    data = array.tobytes()
    out, at = [], 0
    while at < len(data):
        n = int.from_bytes(data[at : at + 4], "little")
        out.append(data[at + 4 : at + 4 + n].decode("utf-8", "surrogatepass"))
        at += 4 + n
    return out


class Sync:
    """One worker's side of sharing (see the module): collect its own, apply the others'.

    Examples
    --------
    Two engines learning different users, synced, end with the same shared rows:

    >>> from streamer.events import Click, ItemEvent
    >>> from streamer.settings import Settings
    >>> s = Settings(n_factors=4, sync_interval_s=1.0)
    >>> a, b = Engine(s), Engine(s)
    >>> sa, sb = Sync(a, "a"), Sync(b, "b")
    >>> items = [ItemEvent(item=i, ts=0.0, tags=["x"]) for i in "pqr"]
    >>> _ = a.process(items), b.process(items)
    >>> _ = a.process([Click(user="u", item="p", type="click", ts=1.0)])
    >>> _ = b.process([Click(user="v", item="q", type="click", ts=1.0)])
    >>> _ = sb.apply(sa.collect(now=2.0)), sa.apply(sb.collect(now=2.0))
    >>> rows = lambda e, k: e.model.ranker.table.latents[e.model.ranker.table.ids[k]]
    >>> bool(np.allclose(rows(a, "item=p"), rows(b, "item=p"), atol=1e-6))
    True
    >>> a.popularity.counts() == b.popularity.counts(), "user=v" in a.model.ranker.table.ids
    (True, False)
    """

    def __init__(self, engine: Engine, sender: str) -> None:
        self.engine, self.sender = engine, sender
        self.seq = 0
        self._tables: dict[str, FastFMClassifier | FastFMRegressor] = {
            "ranker": engine.model.ranker,
            "rater": engine.model.rater,
        }
        for fm in self._tables.values():
            fm.table.track()
        self._intercepts = {name: float(fm.intercept) for name, fm in self._tables.items()}
        self._version = engine.model.version  # the model's interactions at the last collect
        # this worker's positives since the last delta, by name (ids may be renumbered before
        # it is sent: Engine.compact)
        self._positives: list[tuple[str, str, list[str]]] = []
        engine.taps.append(self._tap)
        self._resend: list[tuple[str, str, list[str]]] = []  # positives of parts not sent
        #: per input partition, the furthest position of this worker's own deltas sent by its
        #: runs before this one (found in the topic): a worker that restarted from a snapshot
        #: learns those events again, and does not send them twice
        self.published: dict[tuple[str, int], int] = {}
        self._at: dict[tuple[str, int], int] = {}  # the positions at the last collection
        self.run = uuid.uuid4().hex[:12]
        self.sent = self.sent_bytes = self.received_bytes = 0
        self.applied = 0  # deltas of other workers applied
        self.dropped = 0  # collections not sent: events this worker had published before
        self.rejected = 0  # messages of the topic that were not deltas
        self.last_staleness: float | None = None  # seconds, of the last delta applied

    def _tap(self, seen: Observation) -> None:
        name = self.engine.catalogue.item_of
        self._positives.append((name(seen.item), seen.bucket, [name(i) for i in seen.recent]))

    def collect(self, now: float | None = None) -> Delta:
        """What this worker learned of the shared state since the last collection (each row's
        change metered to at most :data:`DENSE` steps' worth, the rest kept for later)."""
        tables = {}
        steps = self.engine.model.version - self._version  # interactions learned since
        self._version = self.engine.model.version
        for name, fm in self._tables.items():
            keys, rows, dw, dv, counts = fm.table.changes(skip=OWN_PREFIX)
            scale = DENSE / np.maximum(counts, DENSE)
            sent_w = (dw * scale).astype(np.float32)
            sent_v = (dv * scale[:, None]).astype(np.float32)
            intercept = (float(fm.intercept) - self._intercepts[name]) * DENSE / max(steps, DENSE)
            fm.table.unshare(rows, dw - sent_w, dv - sent_v)  # the rest: sent later
            self._intercepts[name] += intercept
            tables[name] = TableDelta(keys, sent_w, sent_v, intercept)
        positives = self._resend + self._positives
        self._positives = []
        self._resend = []
        delta = Delta(
            self.sender, self.seq, time.time() if now is None else now, self._version,
            tables, positives, self.run,
        )  # fmt: skip
        self.seq += 1
        return delta

    def outgoing(
        self, positions: dict[tuple[str, int], int] | None = None, now: float | None = None
    ) -> list[tuple[Delta, bytes]]:
        """:meth:`collect`, in messages for the topic (:meth:`Delta.messages`), with this
        worker's input ``positions``; none if nothing was learned, or if every input partition
        that moved since the last collection is still where an earlier run of this worker had
        published (its events learned again after a restart: sent before). A part that could
        not be sent goes back with :meth:`unsent`."""
        delta = self.collect(now)
        delta.positions = dict(positions or {})
        moved = {tp: o for tp, o in delta.positions.items() if o > self._at.get(tp, -1)}
        self._at = dict(delta.positions)
        again = [o <= self.published.get(tp, -1) for tp, o in moved.items()]
        if again and all(again):
            self.dropped += 1
            return []
        if not delta.positives and not any(t.keys for t in delta.tables.values()):
            return []
        out = delta.messages()
        self.seq = delta.seq + len(out)
        self.sent += len(out)
        self.sent_bytes += sum(len(m) for _, m in out)
        return out

    def unsent(self, parts: Sequence[Delta]) -> None:
        """Parts of :meth:`outgoing` that did not go out: the next collection sends them
        again (their changes and positives are this worker's still to share)."""
        for delta in parts:
            self.sent -= 1
            for name, change in delta.tables.items():
                table = self._tables[name].table
                table.unshare(table.find(change.keys), change.weights, change.latents)
                self._intercepts[name] -= change.intercept
            self._resend.extend(delta.positives)

    def receive(self, data: bytes, now: float | None = None) -> None:
        """One message of the topic: another worker's delta is applied, one of this worker's
        own (sent before a restart) is noted; ``ValueError`` if it is not a delta."""
        try:
            delta = Delta.decode(data)
        except ValueError:
            self.rejected += 1
            raise
        self.received_bytes += len(data)
        if delta.sender == self.sender:  # its own: sent by this run, or by one before a restart
            if delta.run != self.run:
                for tp, offset in delta.positions.items():
                    self.published[tp] = max(self.published.get(tp, -1), offset)
            return
        self.apply(delta, now)

    def apply(self, delta: Delta, now: float | None = None) -> int:
        """Learn another worker's delta (the caller skips this worker's own); returns how
        many items' index vectors it refreshed."""
        engine = self.engine
        shared = engine.learn_shared(delta.positives)
        touched = set(shared)
        catalogue = engine.catalogue
        for name, change in delta.tables.items():
            fm = self._tables[name]
            fm.table.add(change.keys, change.weights, change.latents)
            fm.intercept += change.intercept
            self._intercepts[name] += change.intercept
            touched.update(
                catalogue.id_of(key[5:])
                for key in change.keys
                if key.startswith("item=") and key[5:] in catalogue
            )
        engine.upkeep.refresh(touched, len(shared), engine.events)
        self.applied += 1
        self.last_staleness = (time.time() if now is None else now) - delta.created
        return len(touched)

    def report(self) -> dict[str, Any]:
        """The sharing's figures (the worker's report, ``/metrics``)."""
        return {
            "sent": self.sent,
            "sent_bytes": self.sent_bytes,
            "received_bytes": self.received_bytes,
            "applied": self.applied,
            "dropped": self.dropped,
            "rejected": self.rejected,
            "staleness_s": self.last_staleness,
        }
