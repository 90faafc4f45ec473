"""Snapshots of the worker's learned state, tied to the input offsets they include.

A snapshot is one ``.npz`` file (numpy's zip of arrays, read with ``allow_pickle=False``):
the engine's object graph as JSON (:mod:`streamer.state_codec`), its arrays, the item index's
vectors, and a manifest: format version, the settings that shape what is learned, the offset
of the next event of every input partition, and a SHA-256 of everything else. It is written
to a temporary file, flushed to disk, then renamed over its final name, so a crash leaves the
previous snapshot whole; the last ``keep`` are kept. A snapshot of another format, of other
learning settings, or whose checksum fails is refused with the reason, never loaded in part.

Recovery loads the newest valid snapshot and resumes every partition at its offset: the
events after it are learned again, those before it never twice (exactly-once state over an
at-least-once source).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import re
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from index.factory import make_index
from streamer.engine import Engine
from streamer.memory import collector_paused
from streamer.settings import Settings
from streamer.state_codec import StateError, decode, encode

log = logging.getLogger(__name__)

FORMAT = 10  # 2: parameter tables reuse rows; 3: a stacker per activity group; 4: the rating
# model's neighbourhood, item expiry; 5: the neighbourhood's users in arrays; 6: the index's
# upkeep apart from the engine, the policy's rec_id prefix (A/B arms); 7: parameter tables
# keep their shared values and steps (several workers), rows their keys; 8: the prequential
# scoreboard an observer of the engine, not its attribute; expiry's queues (LastSeen); 9: small
# arrays in one pool per dtype (streamer.state_codec.SMALL), no per-batch popular cache; 10:
# the catalogue compacted (expired items dropped, ids renumbered), sync's positives by name
#: Settings that do not change what the engine learns: a snapshot may be loaded under others.
OPERATIONAL = frozenset(
    {
        "broker", "redis_url", "redis_prefix", "state_dir", "app_id", "topic_clicks",
        "topic_contexts", "topic_items", "topic_dead_letters", "partitions", "items_everywhere",
        "topic_sync", "topic_users", "worker_id",
        "batch_size", "stream_buffer", "engine_process",
        "batch_within_s", "session_timeout_s", "fetch_max_wait_ms", "log_interval_s",
        "web_enabled", "web_port", "web_bind", "health_stall_s", "ready_max_lag",
        "stall_exit_s",
        "pop_publish_s", "sim_publish_s", "rec_ttl_s",
        "redis_pending_max", "faiss_threads", "index_backend", "large_index_min_items",
        "snapshot_interval_s", "snapshot_keep", "ab", "ab_share", "redis_ca_file",
        "kafka_security_protocol",
        "kafka_sasl_mechanism", "kafka_username", "kafka_password", "kafka_ca_file",
    }
)  # fmt: skip
_NAME = re.compile(r"snapshot-(\d{12})\.npz$")

#: Offsets: topic -> partition -> the offset of the next event to learn.
Offsets = dict[str, dict[int, int]]
#: Stamps: topic -> partition -> the Kafka timestamp (ms) of the last message learned, by which
#: a restart tells the log the snapshot learned from from another (a broker that lost it).
Stamps = dict[str, dict[int, int]]


class SnapshotError(StateError):
    """A snapshot that must not be loaded (corrupt, another format, other settings)."""


@dataclass(frozen=True)
class Snapshot:
    """A snapshot on disk and what its manifest says."""

    path: Path
    offsets: Offsets
    events: int
    created: float
    stamps: Stamps = dataclasses.field(default_factory=dict)


def learning_settings(settings: Settings) -> dict[str, Any]:
    """The settings a snapshot's state depends on."""
    return {
        k: list(v) if isinstance(v, tuple) else v
        for k, v in dataclasses.asdict(settings).items()
        if k not in OPERATIONAL
    }


def save(
    engine: Engine,
    offsets: Offsets,
    directory: Path,
    keep: int = 3,
    stamps: Stamps | None = None,
    *,
    items: tuple[np.ndarray, np.ndarray] | None = None,
    path: Path | None = None,
) -> Snapshot:
    """Write ``engine``'s state and ``offsets`` as the next snapshot in ``directory`` (or as
    ``path``: :func:`next_path`). ``items``: the index's ids and vectors, read beforehand
    (``engine.index.all_items()``; a forked copy of the engine's process must not take the
    index's locks, :mod:`streamer.forked`)."""
    stamps = stamps or {}
    path = path or next_path(directory)
    engine.trim()  # the row pools' free ends are not state
    # the taps are the live observers of a running worker (streamer.sync), not state
    externals = {"settings": engine.settings, "index": engine.index, "taps": engine.taps}
    with collector_paused():  # the graph's walk makes millions of objects (streamer.memory)
        doc, arrays = encode(engine, externals)
        state = json.dumps(doc).encode()
    del doc
    ids, vectors = items or engine.index.all_items()
    arrays = {**arrays, "index_ids": np.asarray(ids), "index_vectors": np.asarray(vectors)}
    arrays["state"] = np.frombuffer(state, np.uint8)
    created = time.time()
    manifest = {
        "format": FORMAT,
        "created": created,
        "events": engine.events,
        "offsets": _by_name(offsets),
        "stamps": _by_name(stamps),
        "settings": learning_settings(engine.settings),
        "sha256": _checksum(arrays),
    }
    arrays["manifest"] = np.frombuffer(json.dumps(manifest).encode(), np.uint8)
    temporary = path.with_name(f".{path.name}.tmp")
    try:
        with open(temporary, "wb") as f:
            np.savez(f, **arrays)  # type: ignore[arg-type]
            f.flush()
            os.fsync(f.fileno())
        os.replace(temporary, path)
    except BaseException:  # a full disk: no partial file left to fill it further
        temporary.unlink(missing_ok=True)
        raise
    _fsync_directory(directory)
    for old in sorted(directory.glob("snapshot-*.npz"))[:-keep]:
        old.unlink(missing_ok=True)
    return Snapshot(path, offsets, engine.events, created, stamps)


def load(path: Path, settings: Settings) -> tuple[Engine, Snapshot]:
    """The engine of snapshot ``path``, under ``settings`` (their learning part must match)."""
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {name: data[name] for name in data.files}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        raise SnapshotError(f"{path.name}: not a readable snapshot ({exc})") from None
    try:
        manifest = json.loads(arrays.pop("manifest").tobytes())
    except (KeyError, ValueError):
        raise SnapshotError(f"{path.name}: no manifest") from None
    if manifest.get("format") != FORMAT:
        raise SnapshotError(f"{path.name}: format {manifest.get('format')}, expected {FORMAT}")
    if _checksum(arrays) != manifest.get("sha256"):
        raise SnapshotError(f"{path.name}: checksum mismatch (a corrupt or altered file)")
    theirs, ours = manifest.get("settings", {}), learning_settings(settings)
    changed = sorted(k for k in ours.keys() | theirs.keys() if ours.get(k) != theirs.get(k))
    if changed:
        raise SnapshotError(
            f"{path.name}: learned under other settings ({', '.join(changed)}); "
            "move it away to start afresh, or restore those settings"
        )
    ids, vectors = arrays.pop("index_ids"), arrays.pop("index_vectors")
    index = make_index(
        settings.index_backend, settings.n_factors + 1, len(ids), settings.large_index_min_items
    )
    with collector_paused():  # as in save
        doc = json.loads(arrays.pop("state").tobytes())
        engine = decode(doc, arrays, {"settings": settings, "index": index, "taps": []})
        del doc
    if not isinstance(engine, Engine):
        raise SnapshotError(f"{path.name}: holds a {type(engine).__name__}, not an engine")
    if len(ids):
        index.upsert(ids, vectors)
    offsets, stamps = _by_number(manifest["offsets"]), _by_number(manifest.get("stamps", {}))
    events, created = int(manifest["events"]), float(manifest["created"])
    return engine, Snapshot(path, offsets, events, created, stamps)


def load_latest(directory: Path, settings: Settings) -> tuple[Engine, Snapshot] | None:
    """The newest snapshot in ``directory`` that loads; refused ones are logged and skipped
    (kept on disk for a look). None when there is none."""
    for path in sorted(directory.glob("snapshot-*.npz"), reverse=True):
        try:
            return load(path, settings)
        except SnapshotError as exc:
            log.error("snapshot refused: %s", exc)
    return None


def load_matching(
    directory: Path, settings: Settings, offsets: Offsets
) -> tuple[Engine, Snapshot] | None:
    """The newest snapshot in ``directory`` that loads and was taken at ``offsets``."""
    if not directory.is_dir():
        return None
    for path in sorted(directory.glob("snapshot-*.npz"), reverse=True):
        try:
            engine, saved = load(path, settings)
        except SnapshotError as exc:
            log.error("snapshot refused: %s", exc)
            continue
        if saved.offsets == offsets:
            return engine, saved
    return None


def _by_name(parts: dict[str, dict[int, int]]) -> dict[str, dict[str, int]]:
    return {t: {str(p): v for p, v in per.items()} for t, per in parts.items()}


def _by_number(parts: dict[str, dict[str, Any]]) -> dict[str, dict[int, int]]:
    return {t: {int(p): int(v) for p, v in per.items()} for t, per in parts.items()}


def _checksum(arrays: dict[str, np.ndarray]) -> str:
    digest = hashlib.sha256()
    for name in sorted(arrays):
        array = np.ascontiguousarray(arrays[name])
        digest.update(f"{name}:{array.dtype.str}:{array.shape}".encode())
        if array.size:  # the buffer itself: no copy of a 60 MB state (none if it is empty)
            digest.update(array.data.cast("B"))
    return digest.hexdigest()


def next_path(directory: Path) -> Path:
    """Where the next snapshot in ``directory`` goes (made if missing)."""
    directory.mkdir(parents=True, exist_ok=True)
    numbers = [int(m.group(1)) for p in directory.iterdir() if (m := _NAME.match(p.name))]
    return directory / f"snapshot-{max(numbers, default=0) + 1:012d}.npz"


def _fsync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def describe(snapshot: Snapshot) -> str:
    size = snapshot.path.stat().st_size if snapshot.path.exists() else 0
    return f"{snapshot.path.name} ({snapshot.events} events, {size / 1e6:.1f} MB)"


__all__ = [
    "FORMAT",
    "Offsets",
    "Snapshot",
    "SnapshotError",
    "Stamps",
    "load",
    "load_latest",
    "load_matching",
    "next_path",
    "save",
]
