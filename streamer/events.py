"""Typed events of the three input topics, and their validation.

Every decoder takes the raw bytes of a Kafka message and returns a typed record, or raises
:class:`InvalidEvent` whose message is the reason that goes to the dead-letters topic.

Examples
--------
>>> from streamer.settings import Settings
>>> v = Validator(Settings())
>>> click = v.click(b'{"user": 42, "item": "7", "type": "rating", "value": 4, "ts": 0}')
>>> click.user, click.item, click.value, click.context["weekday"], click.context["daypart"]
('42', '7', 4.0, 'thu', 'night')
>>> v.click(b'{"user": "42", "item": "7", "type": "rating", "value": 9}')
Traceback (most recent call last):
...
streamer.events.InvalidEvent: value 9.0 out of the rating range [0.5, 5.0]
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import faust

from streamer.settings import Settings

EVENT_TYPES = ("click", "view", "rating", "purchase", "skip")
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
MAX_TS = 1e11  # year 5138: anything beyond is a unit mistake (ms instead of s)


class InvalidEvent(ValueError):
    """An input message that cannot be used; its text is the reason."""


class Click(faust.Record, serializer="json"):
    """An interaction of a user with an item (topic ``clicks``)."""

    user: str
    item: str
    type: str
    ts: float
    value: float | None = None
    event_id: str | None = None
    context: dict[str, str] = {}
    rec_id: str | None = None  # the list the click came from, as published

    def is_positive(self, positive_rating: float) -> bool:
        """What counts as the user choosing the item (the hits of the evaluation, the
        strategies' and the policy's evidence): a click, a purchase, or a rating of at least
        ``positive_rating``; never a view or a skip.

        >>> [Click(user="u", item="i", type=t, ts=0.0, value=v).is_positive(4.0)
        ...  for t, v in [("click", None), ("view", None), ("rating", 4.0), ("rating", 3.0)]]
        [True, False, True, False]
        """
        if self.type == "rating":
            return self.value is not None and self.value >= positive_rating
        return self.type in ("click", "purchase")


class ContextEvent(faust.Record, serializer="json"):
    """The user is here now: re-rank for this context (topic ``contexts``)."""

    user: str
    ts: float
    context: dict[str, str] = {}


class ItemEvent(faust.Record, serializer="json"):
    """An item's metadata (topic ``items``): tags and text place new items (cold start)."""

    item: str
    ts: float
    title: str = ""
    tags: list[str] = []
    text: str = ""


#: An event of any of the three input topics.
Event = Click | ContextEvent | ItemEvent


def daypart(hour: int) -> str:
    """Coarse time of day, a context key for popular-in-context lists.

    >>> [daypart(h) for h in (3, 9, 14, 20)]
    ['night', 'morning', 'afternoon', 'evening']
    """
    if hour < 6:
        return "night"
    if hour < 12:
        return "morning"
    if hour < 18:
        return "afternoon"
    return "evening"


class Validator:
    """Decodes and validates raw messages against the limits in the settings."""

    def __init__(self, settings: Settings) -> None:
        self.s = settings

    def decoders(self) -> dict[str, Callable[[bytes], Event]]:
        """The decoder of each input topic, by its kind (``clicks``, ``contexts``, ``items``).

        >>> Validator(Settings()).decoders()["items"](b'{"item": "7"}').item
        '7'
        """
        return {"clicks": self.click, "contexts": self.context, "items": self.item}

    def click(self, raw: bytes) -> Click:
        d = self._object(raw)
        kind = d.get("type", "click")
        if kind not in EVENT_TYPES:
            raise InvalidEvent(f"unknown event type {kind!r}; expected one of {EVENT_TYPES}")
        value = None
        if kind == "rating":
            if "value" not in d or d["value"] is None:
                raise InvalidEvent("rating without a value")
            value = self._number(d["value"], "value")
            if not self.s.rating_min <= value <= self.s.rating_max:
                raise InvalidEvent(
                    f"value {value} out of the rating range "
                    f"[{self.s.rating_min}, {self.s.rating_max}]"
                )
        elif d.get("value") is not None:
            value = self._number(d["value"], "value")
        ts = self._ts(d)
        event_id = d.get("event_id")
        if event_id is not None:
            event_id = self._string(event_id, "event_id", self.s.max_id_len)
        rec_id = d.get("rec_id")
        if rec_id is not None:
            rec_id = self._string(rec_id, "rec_id", self.s.max_id_len)
        return Click(
            user=self._id(d, "user"),
            item=self._id(d, "item"),
            type=kind,
            ts=ts,
            value=value,
            event_id=event_id,
            context=self._context(d, ts),
            rec_id=rec_id,
        )

    def context(self, raw: bytes) -> ContextEvent:
        d = self._object(raw)
        if "context" not in d:
            raise InvalidEvent("missing 'context'")
        ts = self._ts(d)
        return ContextEvent(user=self._id(d, "user"), ts=ts, context=self._context(d, ts))

    def item(self, raw: bytes) -> ItemEvent:
        d = self._object(raw)
        tags = d.get("tags", [])
        if not isinstance(tags, list):
            raise InvalidEvent("'tags' must be a list of strings")
        if len(tags) > self.s.max_tags:
            raise InvalidEvent(f"{len(tags)} tags; at most {self.s.max_tags}")
        return ItemEvent(
            item=self._id(d, "item"),
            ts=self._ts(d),
            title=self._string(d.get("title", ""), "title", self.s.max_text_len),
            tags=[self._string(t, "tag", self.s.max_string_len) for t in tags],
            text=self._string(d.get("text", ""), "text", self.s.max_text_len),
        )

    # -- pieces -------------------------------------------------------------------------------

    def _object(self, raw: bytes) -> dict[str, Any]:
        try:
            if raw[:1] == b"{" and raw[1:2] != b"\x00":  # what json.loads reads as UTF-8
                d = json.loads(raw.decode("utf-8", "surrogatepass"))  # (not guessed again)
            else:  # a BOM, UTF-16 or -32, not an object: json.loads tells
                d = json.loads(raw)
        except ValueError as exc:  # JSONDecodeError, bad UTF-8, an integer of 4,300+ digits
            raise InvalidEvent(f"not JSON: {_short(exc)}") from None
        except (TypeError, RecursionError):
            raise InvalidEvent("not JSON: unreadable message") from None
        if not isinstance(d, dict):
            raise InvalidEvent(f"not a JSON object but {type(d).__name__}")
        return d

    def _id(self, d: dict[str, Any], name: str) -> str:
        if name not in d or d[name] is None:
            raise InvalidEvent(f"missing {name!r}")
        value = d[name]
        if isinstance(value, bool) or not isinstance(value, str | int):
            raise InvalidEvent(
                f"{name!r} must be a string or an integer, not {type(value).__name__}"
            )
        if isinstance(value, int) and not -(10**18) < value < 10**18:
            raise InvalidEvent(f"{name!r} is an integer of more than 18 digits")
        text = _text(str(value).strip(), name)
        if not text:
            raise InvalidEvent(f"empty {name!r}")
        if len(text) > self.s.max_id_len:
            raise InvalidEvent(f"{name!r} longer than {self.s.max_id_len} characters")
        return text

    def _string(self, value: Any, name: str, limit: int) -> str:
        if not isinstance(value, str):
            raise InvalidEvent(f"{name!r} must be a string, not {type(value).__name__}")
        if len(value) > limit:
            raise InvalidEvent(f"{name!r} longer than {limit} characters")
        return _text(value, name)

    def _number(self, value: Any, name: str) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise InvalidEvent(f"{name!r} must be a number, not {type(value).__name__}")
        try:
            number = float(value)
        except OverflowError:  # an integer literal beyond float's range
            raise InvalidEvent(f"{name!r} is out of range") from None
        if not math.isfinite(number):
            raise InvalidEvent(f"{name!r} is not finite")
        return number

    def _ts(self, d: dict[str, Any]) -> float:
        if d.get("ts") is None:
            return time.time()
        ts = self._number(d["ts"], "ts")
        if not 0 <= ts < MAX_TS:
            raise InvalidEvent(f"'ts' {ts} is not unix seconds")
        return ts

    def _context(self, d: dict[str, Any], ts: float) -> dict[str, str]:
        raw = d.get("context") or {}
        if not isinstance(raw, dict):
            raise InvalidEvent("'context' must be an object")
        if len(raw) > self.s.max_context_keys:
            raise InvalidEvent(f"context has {len(raw)} keys; at most {self.s.max_context_keys}")
        context: dict[str, str] = {}
        limit = self.s.max_string_len
        for key, value in raw.items():
            if len(key) > limit:
                raise InvalidEvent(f"context key longer than {limit} characters")
            key = _text(key, "context key")
            text = value if type(value) is str else _context_number(key, value)
            text = _text(text, "context value", of=key)
            if len(text) > limit:
                raise InvalidEvent(f"context value of {key!r} too long")
            context[key] = text
        return enrich_context(context, ts)


def _context_number(key: str, value: Any) -> str:
    """A context value that is not a string: a finite number of at most 18 digits, as text."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidEvent(f"context value of {key!r} must be a string or a number")
    if isinstance(value, float) and not math.isfinite(value):
        raise InvalidEvent(f"context value of {key!r} is not finite")
    if isinstance(value, int) and not -(10**18) < value < 10**18:
        raise InvalidEvent(f"context value of {key!r} is an integer of 19+ digits")
    return str(value)


def _text(value: str, name: str, of: str | None = None) -> str:
    """``value`` if it can be written as UTF-8 (a lone surrogate such as "\\ud800" cannot:
    it would fail later, as a Redis key or a feature name); ``name`` (``of`` what) in the
    reason, made only then."""
    if value.isascii():  # (a flag of the string: no encoding made)
        return value
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        label = name if of is None else f"{name} of {of!r}"
        raise InvalidEvent(f"{label} is not valid Unicode (a lone surrogate)") from None
    return value


def _short(exc: Exception, limit: int = 200) -> str:
    text = str(exc)
    return text if len(text) <= limit else text[:limit] + "..."


def enrich_context(context: dict[str, str], ts: float) -> dict[str, str]:
    """Add the time context (``hour``, ``weekday``, ``daypart``, UTC) that the event lacks.

    >>> enrich_context({"device": "tv", "hour": "21"}, 0.0)
    {'device': 'tv', 'hour': '21', 'weekday': 'thu', 'daypart': 'evening'}
    """
    moment = datetime.fromtimestamp(ts, tz=UTC)
    out = dict(context)
    out.setdefault("hour", str(moment.hour))
    out.setdefault("weekday", WEEKDAYS[moment.weekday()])
    try:
        hour = int(out["hour"])
    except ValueError:
        hour = moment.hour
    out.setdefault("daypart", daypart(hour % 24))
    return out
