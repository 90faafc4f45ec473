"""The Redis sink: every list of a batch in one pipeline (one round trip)."""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from typing import Any

import redis

from streamer.keys import pop_key, rec_key, sim_key
from streamer.recommender import PopList, RecList, SimList


class RedisSink:
    """Writes recommendation and popular lists; ``setup()`` once, then ``write(batch)``.

    Examples
    --------
    >>> class FakeRedis:  # the two calls the sink makes
    ...     def __init__(self): self.data = {}
    ...     def ping(self): return True
    ...     def pipeline(self, transaction=False): return self
    ...     def set(self, key, value, ex=None): self.data[key] = json.loads(value)
    ...     def execute(self): return []
    >>> sink = RedisSink(FakeRedis(), prefix="t:")
    >>> sink.setup()
    >>> ts = sink.write([RecList("u1", [("i9", 0.5)], {}, 3, 1.0, "model")], [PopList("", [])])
    >>> sorted(sink.client.data), sink.client.data["t:rec:u1"]["items"]
    (['t:pop', 't:rec:u1'], [{'item': 'i9', 'score': 0.5, 'strategy': 'model'}])
    """

    def __init__(self, client: Any, prefix: str = "streamrec:", ttl_s: int = 0) -> None:
        self.client, self.prefix, self.ttl_s = client, prefix, ttl_s

    @classmethod
    def from_url(cls, url: str, prefix: str = "streamrec:", ttl_s: int = 0) -> RedisSink:
        return cls(redis.Redis.from_url(url), prefix, ttl_s)

    def setup(self) -> None:
        """Fail early, with the address, when Redis is not there."""
        try:
            self.client.ping()
        except redis.RedisError as exc:
            raise ConnectionError(f"Redis is not reachable: {exc}") from exc

    def write(
        self,
        lists: Sequence[RecList],
        popular: Sequence[PopList] = (),
        extra: dict[str, Any] | None = None,
        similar: Sequence[SimList] = (),
    ) -> float:
        """Write everything in one pipeline; returns the ``published_ts`` it stamped."""
        if not lists and not popular and not extra and not similar:
            return time.time()
        published = time.time()
        pipe = self.client.pipeline(transaction=False)
        ex = self.ttl_s or None
        for rec in lists:
            pipe.set(rec_key(self.prefix, rec.user), _dumps(rec.to_json(published)), ex=ex)
        for pop in popular:
            pipe.set(pop_key(self.prefix, pop.key), _dumps(pop.to_json(published)))
        for sim in similar:
            pipe.set(sim_key(self.prefix, sim.item), _dumps(sim.to_json(published)))
        for name, value in (extra or {}).items():
            pipe.set(f"{self.prefix}{name}", _dumps(value))
        pipe.execute()
        return published


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))
