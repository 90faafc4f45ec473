"""The protocol every candidate source follows: learn from an observation, propose candidates."""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Protocol, runtime_checkable

import numpy as np

#: A strategy's proposals for one query: (item index id, score), best first.
Scored = list[tuple[int, float]]


@dataclass(frozen=True)
class Observation:
    """A user chose ``item`` in context bucket ``bucket``; ``recent`` holds the user's items
    before this one, the most recent last."""

    user: str
    item: int
    bucket: str
    recent: Sequence[int]


@dataclass(frozen=True)
class Query:
    """Propose for ``user`` in context bucket ``bucket``; ``recent`` is the user's items, the
    most recent last; ``exclude`` what must not be proposed (empty for re-consumption);
    ``context`` the user's context as sent."""

    user: str
    bucket: str
    recent: Sequence[int]
    exclude: Collection[int] = frozenset()
    context: Mapping[str, str] = field(default_factory=dict)

    @cached_property
    def excluded(self) -> np.ndarray:
        """``exclude`` as an array (made once, shared by the strategies that take it)."""
        return np.fromiter(self.exclude, np.int64, len(self.exclude))


@runtime_checkable
class Strategy(Protocol):
    """A candidate source. ``repeats`` says whether it proposes the user's own items."""

    name: str
    repeats: bool

    def learn(self, observation: Observation) -> None:
        """Learn from one positive observation (before the user's history includes it)."""

    def candidates(self, queries: Sequence[Query], k: int) -> list[Scored]:
        """Up to ``k`` scored items per query, best first, none of ``query.exclude``."""


@runtime_checkable
class Renumbered(Protocol):
    """A strategy that keeps item ids of its own (beyond what the engine renumbers itself:
    popularity, co-occurrence counts, histories), told when the catalogue renumbers them."""

    def renumber(self, mapping: np.ndarray) -> None:
        """Item ids renumbered by ``mapping`` (old id -> new id, -1: dropped)."""
