"""One event of a log, addressed to a topic kind."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

KINDS = ("clicks", "contexts", "items")


@dataclass(frozen=True)
class LogRecord:
    """An event for topic ``kind`` (clicks, contexts or items), keyed as in docs/architecture.md."""

    kind: str
    key: str
    value: dict[str, Any]
    ts: float

    def payload(self) -> bytes:
        return json.dumps(self.value, separators=(",", ":")).encode()


def classify(value: dict[str, Any]) -> str:
    """The topic kind of an event in the topic formats.

    >>> classify({"user": "1", "item": "2"}), classify({"item": "2", "tags": []})
    ('clicks', 'items')
    >>> classify({"user": "1", "context": {}})
    'contexts'
    """
    topic = value.get("topic")
    if topic in KINDS:
        return str(topic)
    if "user" in value and "item" in value:
        return "clicks"
    if "item" in value:
        return "items"
    return "contexts"


def from_value(value: dict[str, Any], default_ts: float = 0.0) -> LogRecord:
    kind = classify(value)
    value = {k: v for k, v in value.items() if k != "topic"}
    key = str(value.get("item" if kind == "items" else "user", ""))
    ts = value.get("ts")
    return LogRecord(kind, key, value, float(ts) if isinstance(ts, int | float) else default_ts)
