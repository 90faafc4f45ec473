"""The Redis sink: every list of a batch in one pipeline (one round trip), and through an outage
the latest value of every key kept (bounded) and written when Redis is back."""

from __future__ import annotations

import json
import logging
import ssl
import time
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

import redis
from redis.backoff import NoBackoff
from redis.exceptions import AuthenticationError, AuthorizationError
from redis.retry import Retry

from streamer.keys import pop_key, rec_key, sim_key
from streamer.recommender import PopList, RecList, SimList

log = logging.getLogger(__name__)

#: The longest a write waits for Redis; and the question asked of a Redis that is away before
#: each write is tried again.
WRITE_TIMEOUT_S, PROBE_TIMEOUT_S = 2.0, 0.25

#: Backoff between attempts while Redis is unreachable: from FIRST_RETRY_S, doubling, at most
#: LAST_RETRY_S. Batches in between are not held up: their values join the pending ones.
FIRST_RETRY_S, LAST_RETRY_S = 0.1, 5.0


class RedisSink:
    """Writes recommendation and popular lists; ``setup()`` once, then ``write(batch)``.

    A write that fails (Redis down, a timeout) raises nothing: its values are kept, the latest
    per key, at most ``max_pending`` keys (the oldest dropped and counted), and written with a
    later batch once a retry succeeds; ``failed_writes`` counts the failures.

    Examples
    --------
    >>> class FakeRedis:  # the two calls the sink makes
    ...     def __init__(self): self.data, self.down = {}, False
    ...     def ping(self): return True
    ...     def pipeline(self, transaction=False): self.batch = {}; return self
    ...     def set(self, key, value, ex=None): self.batch[key] = json.loads(value)
    ...     def execute(self):
    ...         if self.down: raise redis.ConnectionError("down")
    ...         self.data.update(self.batch)
    >>> sink = RedisSink(FakeRedis(), prefix="t:")
    >>> sink.setup()
    >>> ts = sink.write([RecList("u1", [("i9", 0.5)], {}, 3, 1.0, "model")], [PopList("", [])])
    >>> sorted(sink.client.data), sink.client.data["t:rec:u1"]["items"]
    (['t:pop', 't:rec:u1'], [{'item': 'i9', 'score': 0.5, 'strategy': 'model'}])
    >>> sink.client.down = True  # an outage: nothing raised, the list is kept
    >>> sink.write([RecList("u2", [("i7", 0.1)], {}, 4, 2.0, "model")]) is None, sink.reachable
    (True, False)
    >>> sink.client.down, sink._retry_at = False, 0.0  # back (and the backoff over)
    >>> sink.write([]) is not None, "t:rec:u2" in sink.client.data, sink.failed_writes
    (True, True, 1)
    >>> sink.reachable
    True
    """

    def __init__(
        self,
        client: Any,
        prefix: str = "streamrec:",
        ttl_s: int = 0,
        max_pending: int = 100_000,
        probe: Any = None,
    ) -> None:
        self.client, self.prefix, self.ttl_s = client, prefix, ttl_s
        #: a client with short timeouts, asked first while Redis is away (None: the write is
        #: the test): a Redis that does not answer holds the event loop that long, not 2 s
        self.probe = probe
        self.max_pending = max_pending
        self.failed_writes = 0  # writes that did not reach Redis
        self.dropped = 0  # pending values dropped (more than max_pending keys)
        self._pending: OrderedDict[str, tuple[str, int | None]] = OrderedDict()
        self._retry_at = 0.0
        self._backoff = FIRST_RETRY_S
        #: whether Redis answered the last time it was asked (at setup, then at each write)
        self.reachable = True

    @classmethod
    def from_url(
        cls,
        url: str,
        prefix: str = "streamrec:",
        ttl_s: int = 0,
        max_pending: int = 100_000,
        **options: Any,
    ) -> RedisSink:
        """A sink on ``url`` (``rediss://user:password@host:port/db`` for an ACL user and TLS);
        ``options`` go to redis-py (:func:`streamer.security.redis_options`)."""

        def client(timeout_s: float) -> redis.Redis:
            # a hung Redis must not hold the stream: a call waits at most this long, once (the
            # sink retries with its own backoff: redis-py's own retries held a call ~4 s)
            return redis.Redis.from_url(
                url,
                socket_timeout=timeout_s,
                socket_connect_timeout=timeout_s,
                retry=Retry(NoBackoff(), 0),
                **options,
            )

        return cls(client(WRITE_TIMEOUT_S), prefix, ttl_s, max_pending, client(PROBE_TIMEOUT_S))

    def setup(self) -> None:
        """Fail early on what waiting will not mend: Redis refuses this worker (a wrong password
        or user, a command it does not allow) or its TLS fails (a certificate). A Redis that is
        not up yet is an outage like one later: warned of, and the lists are kept until it is
        back (:meth:`write`), rather than a worker that ends and is restarted in a loop."""
        try:
            self.client.ping()
        except (AuthenticationError, AuthorizationError, redis.ResponseError) as exc:
            raise ConnectionError(f"Redis refused this worker: {exc}") from exc
        except redis.RedisError as exc:
            if isinstance(exc.__cause__ or exc.__context__, ssl.SSLError):
                raise ConnectionError(f"Redis over TLS failed: {exc}") from exc
            self.reachable = False
            log.warning("Redis not reachable (%s): the lists are kept until it is back", exc)

    @property
    def pending(self) -> int:
        """Keys waiting for Redis to come back."""
        return len(self._pending)

    def write(
        self,
        lists: Sequence[RecList],
        popular: Sequence[PopList] = (),
        extra: dict[str, Any] | None = None,
        similar: Sequence[SimList] = (),
    ) -> float | None:
        """Write everything in one pipeline, with whatever an outage left pending; returns
        the ``published_ts`` it stamped, or None when Redis could not be reached (the values
        are kept for a later write)."""
        published = time.time()
        ex = self.ttl_s or None
        values: list[tuple[str, str, int | None]] = [
            (rec_key(self.prefix, rec.user), _dumps(rec.to_json(published)), ex) for rec in lists
        ]
        values += [
            (pop_key(self.prefix, p.key), _dumps(p.to_json(published)), None) for p in popular
        ]
        values += [
            (sim_key(self.prefix, s.item), _dumps(s.to_json(published)), None) for s in similar
        ]
        values += [(f"{self.prefix}{k}", _dumps(v), None) for k, v in (extra or {}).items()]
        if not values and not self._pending:
            return published
        if self._pending and time.monotonic() < self._retry_at:  # still backing off
            self._keep(values)
            return None
        try:
            if self._pending and self.probe is not None:  # away: a short question first
                self.probe.ping()
            self._execute(values)
        except redis.RedisError as exc:
            self.reachable = False
            self.failed_writes += 1
            self._keep(values)
            self._retry_at = time.monotonic() + self._backoff
            if self._backoff == FIRST_RETRY_S:
                log.warning("Redis write failed (%s): keeping the latest lists, retrying", exc)
            self._backoff = min(2 * self._backoff, LAST_RETRY_S)
            return None
        self.reachable = True
        if self._pending:
            log.info("Redis is back: %d pending keys written", len(self._pending))
            self._pending.clear()
        self._backoff = FIRST_RETRY_S
        return published

    def _execute(self, values: Sequence[tuple[str, str, int | None]]) -> None:
        """Everything pending, then ``values``, in one pipeline."""
        pipe = self.client.pipeline(transaction=False)
        written = {key for key, _, _ in values}
        for key, (value, ttl) in self._pending.items():
            if key not in written:  # older than this batch's value of the same key
                pipe.set(key, value, ex=ttl)
        for key, value, ttl in values:
            pipe.set(key, value, ex=ttl)
        pipe.execute()

    def _keep(self, values: Sequence[tuple[str, str, int | None]]) -> None:
        pending = self._pending
        for key, value, ttl in values:
            pending[key] = (value, ttl)
            pending.move_to_end(key)
        while len(pending) > self.max_pending:
            pending.popitem(last=False)
            self.dropped += 1


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))
