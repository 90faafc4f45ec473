"""The read helper: a user's list, else the popular list of the context, else overall; an
item's similar items. Imports nothing beyond the standard library (the client passes its own
redis-py connection)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from streamer.keys import pop_key, rec_key, sim_key
from streamer.popularity import context_key

DEFAULT_POP_KEYS = ("device", "daypart", "location")


def get_recommendations(
    client: Any,
    user: str,
    k: int = 10,
    context: Mapping[str, str] | None = None,
    prefix: str = "streamrec:",
    pop_context_keys: tuple[str, ...] = DEFAULT_POP_KEYS,
) -> dict[str, Any]:
    """Read ``user``'s recommendations in one round trip (``MGET`` of three keys).

    Returns the published JSON (``items`` cut to ``k``) with ``"source"`` saying where it came
    from: ``model`` or ``popular`` (written by the worker for this user), ``popular-context``
    or ``popular-overall`` (the fallbacks, for users the worker has not seen), or ``none``.

    Examples
    --------
    >>> class FakeRedis:
    ...     def __init__(self, data): self.data = data
    ...     def mget(self, keys): return [self.data.get(k) for k in keys]
    >>> pop = json.dumps({"items": [{"item": "7", "score": 3.0}]})
    >>> r = FakeRedis({"streamrec:pop:device=tv": pop})
    >>> get_recommendations(r, "new-user", context={"device": "tv"})["source"]
    'popular-context'
    >>> get_recommendations(FakeRedis({}), "u")["items"]
    []
    """
    keys = [rec_key(prefix, user)]
    bucket = context_key(context or {}, pop_context_keys)
    keys.append(pop_key(prefix, bucket) if bucket else pop_key(prefix))
    keys.append(pop_key(prefix))
    found = client.mget(keys)
    for raw, source in zip(found, (None, "popular-context", "popular-overall"), strict=True):
        if raw is None:
            continue
        value: dict[str, Any] = json.loads(raw)
        value["items"] = value.get("items", [])[:k]
        if source is not None:
            value["source"] = source
            value["user"] = user
        return value
    return {"user": user, "items": [], "source": "none"}


def get_similar(client: Any, item: str, k: int = 10, prefix: str = "streamrec:") -> dict[str, Any]:
    """The items most similar to ``item`` (item-kNN co-occurrence), one ``GET``.

    >>> class FakeRedis:
    ...     def get(self, key): return None
    >>> get_similar(FakeRedis(), "7")
    {'item': '7', 'items': []}
    """
    raw = client.get(sim_key(prefix, item))
    if raw is None:
        return {"item": item, "items": []}
    value: dict[str, Any] = json.loads(raw)
    value["items"] = value.get("items", [])[:k]
    return value
