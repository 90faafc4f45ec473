"""One frozen, typed settings object, read from ``STREAMREC_*`` environment variables."""

from __future__ import annotations

import dataclasses
import os
import re
import socket
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

PREFIX = "STREAMREC_"


@dataclass(frozen=True)
class Settings:
    """Every knob of streamrec. Each field ``name`` is read from ``STREAMREC_NAME``.

    Examples
    --------
    >>> s = Settings.from_env({"STREAMREC_TOP_K": "5", "STREAMREC_POP_CONTEXT_KEYS": "device"})
    >>> s.top_k, s.pop_context_keys, s.broker
    (5, ('device',), '127.0.0.1:9092')
    >>> Settings.from_env({"STREAMREC_TOP_K": "many"})
    Traceback (most recent call last):
    ...
    ValueError: STREAMREC_TOP_K='many': expected int
    """

    # Where things are.
    broker: str = "127.0.0.1:9092"
    redis_url: str = "redis://127.0.0.1:6379/0"  # rediss://user:password@host:6380/0: ACL, TLS
    redis_ca_file: str = ""  # a private CA for rediss:// (else the system's)
    kafka_security_protocol: str = "PLAINTEXT"  # PLAINTEXT | SSL | SASL_PLAINTEXT | SASL_SSL
    kafka_sasl_mechanism: str = "PLAIN"  # PLAIN | SCRAM-SHA-256 | SCRAM-SHA-512
    kafka_username: str = ""
    kafka_password: str = dataclasses.field(default="", repr=False)
    kafka_ca_file: str = ""  # a private CA for SSL / SASL_SSL (else the system's)
    redis_prefix: str = "streamrec:"
    state_dir: str = ".streamrec"
    # Topics.
    app_id: str = "streamrec"
    topic_clicks: str = "clicks"
    topic_contexts: str = "contexts"
    topic_items: str = "items"
    topic_dead_letters: str = "dead-letters"
    partitions: int = 4
    items_everywhere: bool = True  # every worker reads every partition of `items` (see README)
    # Several workers (streamer.sync): what each learns of the shared state, published this
    # often to topic_sync, and its users' own state to topic_users (streamer.handover; 0: one
    # worker, nothing shared); worker_id tells a worker's own messages apart (stable across
    # its restarts; "": host name and web port).
    sync_interval_s: float = 0.0
    topic_sync: str = "streamrec-sync"
    topic_users: str = "streamrec-users"  # each user's own state, by its input partition
    worker_id: str = ""
    # Worker.
    batch_size: int = 1000
    # a paced stream's batch at most this often: one per fetch (Tansu answers a fetch when its
    # wait, fetch_max_wait_ms, ends); catching up, batches fill to batch_size (streamer.batching)
    batch_within_s: float = 0.01
    stream_buffer: int = 4096  # messages Faust may prefetch per stream (its back pressure)
    # The engine in a process of its own beside Faust's (streamer.hosts): the two overlap on
    # two cores instead of taking turns on one (off, or with sharing: in the worker's process).
    engine_process: bool = True
    session_timeout_s: float = 10.0
    fetch_max_wait_ms: int = 10
    log_interval_s: float = 10.0
    web_enabled: bool = True  # /metrics, /health, /ready and the dashboard
    web_port: int = 6066
    web_bind: str = "127.0.0.1"  # loopback unless told (0.0.0.0 in a container)
    health_stall_s: float = 30.0  # /health: the loop, or batches while messages wait, stalled
    ready_max_lag: int = 10_000  # /ready fails while more messages than this wait
    stall_exit_s: float = 120.0  # exit 1 when no batch was taken this long while messages wait
    snapshot_interval_s: float = 60.0  # the learned state written this often (0: never)
    snapshot_keep: int = 3  # snapshots kept (the newest)
    # A/B arms (streamer.arms): arm b's settings, "name=value,..." ("": no arms), its users.
    ab: str = ""
    ab_share: float = 0.5
    # Model.
    n_factors: int = 10
    rating_lr: float = 0.05
    ranking_lr: float = 0.05
    rating_side_weight: float = 0.15
    rating_prior: float = 3.5
    rating_neighbours: int = 50  # the user's last N ratings, neighbours of the rated item (0: off)
    l2: float = 0.0
    sequence_items: int = 3  # the user's last N items as query-side features (0: none)
    max_norm: float = 10.0  # bound of every weight and latent row (0: none)
    negatives: int = 8
    uniform_negatives: float = 0.5
    popularity_prior: float = 1.5
    new_item_events: int = 5000
    rating_min: float = 0.5
    rating_max: float = 5.0
    positive_rating: float = 4.0
    seed: int = 42
    # Recommending: the strategies that propose candidates, and the policy that fuses them.
    strategies: tuple[str, ...] = ("personal", "similar", "near", "recent", "popular", "fresh")
    seen_items: str = "policy"  # exclude | allow | policy (re-consumption when it pays)
    # MMR lambda over the fused candidates (0: the policy's order); calibration, when on,
    # re-ranks instead. 0.1: exposure spread (Gini down on every log) for <= 0.7% HitRate
    diversity: float = 0.1
    calibration: float = 0.0  # Steck's lambda: tag shares of the list vs the history (0: off)
    max_per_tag: int = 0  # at most N items per tag in a list, instead of MMR (0: off)
    knn_last: int = 10  # item-kNN scores over the user's last N items
    knn_decay: float = 0.8  # each step back weighs this times the next one (1: all the same)
    knn_window: int = 50  # "similar": co-occurrences counted within a user's last N items
    knn_near_window: int = 10  # "near": the same within the last N items
    knn_neighbours: int = 300  # neighbours kept per item (twice this before a prune)
    exploration: float = 0.1  # share of lists built from Thompson samples of the policy
    policy_context_keys: tuple[str, ...] = ("device", "daypart")
    policy_users: int = 200_000  # users whose last candidate lists are kept for credit
    fresh_items: int = 200  # the newest items the fresh strategy proposes
    candidates: int = 40  # items each strategy proposes for the policy to rank
    top_k: int = 20
    eval_k: int = 10
    history_size: int = 500
    user_ttl_s: float = 0.0  # users not seen for this long (stream time) expire (0: never)
    user_min_events: int = 1  # a user's id enters the model from their Nth event (1: the first)
    item_ttl_s: float = 0.0  # items not clicked nor updated for this long expire (0: never)
    pop_context_keys: tuple[str, ...] = ("device", "daypart", "location")
    pop_publish_s: float = 2.0
    sim_publish_s: float = 10.0  # how often the similar items of the items chosen are written
    rec_ttl_s: int = 0
    redis_pending_max: int = 100_000  # keys kept through a Redis outage (the latest value each)
    # Index.
    index_backend: str = "auto"
    large_index_min_items: int = 50_000
    index_refresh_per_event: float = 4.0
    faiss_threads: int = 1
    # Validation limits.
    max_id_len: int = 256
    max_context_keys: int = 16
    max_string_len: int = 256
    max_text_len: int = 10_000
    max_tags: int = 32

    def __post_init__(self) -> None:
        if not 0.0 <= self.ab_share <= 1.0:
            raise ValueError(f"{PREFIX}AB_SHARE={self.ab_share}: expected 0 to 1")
        self.ab_changes()  # arm b's settings parse, or a clear error now
        if self.max_per_tag < 0:
            raise ValueError(f"{PREFIX}MAX_PER_TAG={self.max_per_tag}: expected 0 (off) or more")
        for name in ("diversity", "calibration"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{PREFIX}{name.upper()}={getattr(self, name)}: expected 0 to 1")
        if self.ab and self.sync_interval_s > 0:
            raise ValueError(f"{PREFIX}AB and {PREFIX}SYNC_INTERVAL_S: arms are for one worker")

    def ab_changes(self) -> dict[str, Any]:
        """Arm b's settings (``ab``), typed as the settings are.

        >>> Settings(ab="knn_decay=1, knn_last=5").ab_changes()
        {'knn_decay': 1.0, 'knn_last': 5}
        >>> Settings(ab="knn_lats=5")
        Traceback (most recent call last):
        ...
        ValueError: STREAMREC_AB: unknown settings ['knn_lats']
        """
        return self.changes(self.ab, "AB", forbidden=("ab", "ab_share"))

    @classmethod
    def changes(
        cls, text: str, name: str = "settings", forbidden: tuple[str, ...] = ()
    ) -> dict[str, Any]:
        """``name=value,...`` as typed settings (``name``: where the text came from, for errors).

        >>> Settings.changes("top_k=5, web_enabled=0")
        {'top_k': 5, 'web_enabled': False}
        """
        label = f"{PREFIX}{name}" if name.isupper() else name
        pairs = parse_pairs(text, label)
        types = {f.name: f.type for f in dataclasses.fields(cls)}
        unknown = sorted((set(pairs) - set(types)) | (set(pairs) & set(forbidden)))
        if unknown:
            raise ValueError(f"{label}: unknown settings {unknown}")
        return {k: _parse(f"{label} {k}", v, types[k]) for k, v in pairs.items()}

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Build settings from ``environ`` (default ``os.environ``), then ``overrides``."""
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            key = PREFIX + f.name.upper()
            if key in env:
                values[f.name] = _parse(key, env[key], f.type)
        values.update(overrides)
        return cls(**values)

    def as_env(self) -> dict[str, str]:
        """The environment variables that reproduce these settings (for child processes)."""
        out = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, tuple):
                value = ",".join(value)
            elif isinstance(value, bool):
                value = "1" if value else "0"
            out[PREFIX + f.name.upper()] = str(value)
        return out

    def isolated(self, tag: str) -> Settings:
        """The same settings on their own topics, consumer group and Redis prefix.

        >>> Settings().isolated("t1").topic_clicks
        'clicks-t1'
        """
        return dataclasses.replace(
            self,
            app_id=f"{self.app_id}-{tag}",
            topic_clicks=f"{self.topic_clicks}-{tag}",
            topic_contexts=f"{self.topic_contexts}-{tag}",
            topic_items=f"{self.topic_items}-{tag}",
            topic_dead_letters=f"{self.topic_dead_letters}-{tag}",
            topic_sync=f"{self.topic_sync}-{tag}",
            topic_users=f"{self.topic_users}-{tag}",
            redis_prefix=f"{self.redis_prefix}{tag}:",
        )

    @property
    def state_path(self) -> Path:
        return Path(self.state_dir).expanduser().resolve()

    @property
    def snapshot_path(self) -> Path:
        """Where this app's snapshots are written (see :mod:`streamer.snapshot`); with
        several workers sharing (``sync_interval_s``), each worker's in its own directory.

        >>> Settings(sync_interval_s=1.0, worker_id="w/1").snapshot_path.parts[-2:]
        ('streamrec', 'worker-w_1')
        """
        path = self.state_path / "snapshots" / self.app_id
        if self.sync_interval_s > 0:
            path /= "worker-" + re.sub(r"[^A-Za-z0-9_.:-]", "_", self.worker_name)
        return path

    @property
    def worker_name(self) -> str:
        """This worker's name among those sharing: ``worker_id``, else the host's name and the
        web port (one worker per port on a machine); stable across its restarts."""
        return self.worker_id or f"{socket.gethostname()}:{self.web_port}"

    @property
    def input_topics(self) -> dict[str, str]:
        """Topic name per kind of input (``clicks``, ``contexts``, ``items``).

        >>> Settings().input_topics["items"]
        'items'
        """
        return {
            "clicks": self.topic_clicks,
            "contexts": self.topic_contexts,
            "items": self.topic_items,
        }

    @property
    def topics(self) -> tuple[str, ...]:
        """Every topic the workers read or write."""
        return (
            self.topic_clicks,
            self.topic_contexts,
            self.topic_items,
            self.topic_dead_letters,
            self.topic_sync,
            self.topic_users,
        )


def parse_pairs(text: str, what: str = "") -> dict[str, str]:
    """``a=1,b=2`` as a dict (``what``: where the text came from, for the error).

    >>> parse_pairs("device=tv, location=home")
    {'device': 'tv', 'location': 'home'}
    """
    pairs = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        key, sep, value = part.partition("=")
        if not sep:
            raise ValueError(f"{what + ': ' if what else ''}expected key=value, got {part!r}")
        pairs[key.strip()] = value.strip()
    return pairs


def _parse(key: str, raw: str, type_name: object) -> Any:
    kind = str(type_name)
    try:
        if kind == "int":
            return int(raw)
        if kind == "float":
            return float(raw)
        if kind == "bool":
            if raw.lower() in {"1", "true", "yes", "on"}:
                return True
            if raw.lower() in {"0", "false", "no", "off", ""}:
                return False
            raise ValueError(raw)
        if kind.startswith("tuple"):
            return tuple(part.strip() for part in raw.split(",") if part.strip())
    except ValueError:
        expected = kind.split("[")[0]
        raise ValueError(f"{key}={raw!r}: expected {expected}") from None
    return raw
