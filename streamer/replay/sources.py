"""Open a log in any supported format as an iterator of :class:`LogRecord`."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from streamer.replay.movielens import is_movielens, movielens
from streamer.replay.record import LogRecord, from_value


class LogError(ValueError):
    """A log that cannot be read; the message says where and why."""


def open_log(
    path: Path, columns: Mapping[str, str] | None = None, event_type: str = "rating"
) -> Iterator[LogRecord]:
    """A MovieLens-100K directory, a ``.jsonl`` file, or a ``.csv`` file (with ``columns``)."""
    if is_movielens(path):
        return movielens(path)
    if not path.is_file():
        raise LogError(f"{path}: neither a MovieLens-100K directory nor a file")
    if path.suffix == ".csv":
        return read_csv(path, columns or {}, event_type)
    return read_jsonl(path)


def read_jsonl(path: Path) -> Iterator[LogRecord]:
    """One JSON object per line, in the topic formats (``"topic"`` may name the topic)."""
    with path.open(encoding="utf-8") as lines:
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                value = json.loads(line)
            except json.JSONDecodeError as exc:
                raise LogError(f"{path}:{number}: not JSON: {exc}") from None
            if not isinstance(value, dict):
                raise LogError(f"{path}:{number}: not a JSON object")
            yield from_value(value)


def read_csv(path: Path, columns: Mapping[str, str], event_type: str) -> Iterator[LogRecord]:
    """Rows of a CSV with a header; ``columns`` maps event fields to column names.

    Fields: ``user``, ``item``, ``value``, ``ts``, ``type``; other mapped fields become
    context (``device=platform`` puts column ``platform`` in ``context["device"]``).
    """
    mapping = {"user": "user", "item": "item", "value": "value", "ts": "ts", "type": "type"}
    mapping.update(columns)
    with path.open(encoding="utf-8", newline="") as handle:
        reader = csv.DictReader(handle)
        header = reader.fieldnames or []
        for needed in ("user", "item"):
            if mapping[needed] not in header:
                raise LogError(f"{path}: no column {mapping[needed]!r} for {needed!r} in {header}")
        for row in reader:
            value: dict[str, Any] = {
                "user": row[mapping["user"]],
                "item": row[mapping["item"]],
                "type": row.get(mapping["type"]) or event_type,
            }
            for name in ("value", "ts"):
                if row.get(mapping[name]) not in (None, ""):
                    value[name] = float(row[mapping[name]])
            context = {
                field: row[column]
                for field, column in mapping.items()
                if field not in {"user", "item", "value", "ts", "type"} and row.get(column)
            }
            if context:
                value["context"] = context
            yield from_value(value)
