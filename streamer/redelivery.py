"""Messages delivered again after a rebalance, told from new ones without asking the broker.

When partitions are assigned to a running worker again (another worker joined or left the
group, or its session lapsed), Faust resumes each at its last *committed* offset, which is up
to a commit interval behind what the engine has learned: those events would be learned twice.
Seeking to the engine's own offsets instead stalled Faust when the broker had lost its log (a
restart of the memory-only broker): the offsets it learned at are then other messages'.
:class:`Delivered` keeps, per partition, the offset and the Kafka timestamp of the last
messages learned; a message at an offset the engine has passed is a redelivery when it is the
one learned there (same timestamp), and new learning when it is not (another log). Further
back than it remembers, :class:`Redeliveries` asks the broker once whether the log is still the
one it learned (the timestamp of the last message learned: its ``log_check``).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Protocol

import numpy as np

log = logging.getLogger(__name__)

#: Messages remembered per partition: more than a commit interval's worth at any rate here.
REMEMBERED = 4096
#: The Kafka timestamp (ms) of the message at each ``(topic, partition) -> offset`` of the
#: broker's log (None: no such message; ``stack.UNANSWERED``: the broker did not say).
LogCheck = Callable[[dict[tuple[str, int], int]], Awaitable[dict[tuple[str, int], int | None]]]
Partition = tuple[str, int]


class Located(Protocol):
    """What telling a redelivery needs of a message: where it is, and its timestamp."""

    @property
    def topic(self) -> str: ...

    @property
    def partition(self) -> int: ...

    @property
    def offset(self) -> int: ...

    @property
    def timestamp(self) -> float:  # seconds
        ...


def stamp_ms(message: Located) -> int:
    """The message's Kafka timestamp in ms, as the offsets' stamps and redeliveries keep it."""
    return round(message.timestamp * 1000)


class Delivered:
    """The last ``size`` (offset, timestamp) learned per partition, in a ring.

    >>> d = Delivered(size=4)
    >>> for offset in range(6):
    ...     d.add("clicks", 0, offset, 1000 + offset)
    >>> d.seen("clicks", 0, 5, 1005), d.seen("clicks", 0, 5, 7), d.seen("clicks", 0, 1, 1001)
    (True, False, False)
    >>> d.seen("clicks", 1, 5, 1005)  # a partition never learned from
    False
    """

    def __init__(self, size: int = REMEMBERED) -> None:
        self.size = size
        self._rings: dict[tuple[str, int], tuple[np.ndarray, np.ndarray]] = {}

    def add(self, topic: str, partition: int, offset: int, stamp_ms: int) -> None:
        """The message at ``offset`` of ``topic[partition]``, stamped ``stamp_ms``, is learned."""
        ring = self._rings.get((topic, partition))
        if ring is None:
            ring = self._rings[(topic, partition)] = (
                np.full(self.size, -1, np.int64),
                np.zeros(self.size, np.int64),
            )
        slot = offset % self.size
        ring[0][slot], ring[1][slot] = offset, stamp_ms

    def holds(self, topic: str, partition: int, offset: int) -> bool:
        """Whether the message learned at ``offset`` is still among the last ones (whatever its
        timestamp): if it is, :meth:`seen` tells; if not, only the broker can.

        >>> d = Delivered(size=4)
        >>> for offset in range(6):
        ...     d.add("clicks", 0, offset, 1000 + offset)
        >>> d.holds("clicks", 0, 2), d.holds("clicks", 0, 1)
        (True, False)
        """
        ring = self._rings.get((topic, partition))
        return ring is not None and bool(ring[0][offset % self.size] == offset)

    def seen(self, topic: str, partition: int, offset: int, stamp_ms: int) -> bool:
        """Whether this very message (offset and timestamp) was learned, among the last ones."""
        ring = self._rings.get((topic, partition))
        if ring is None:
            return False
        slot = offset % self.size
        return bool(ring[0][slot] == offset and ring[1][slot] == stamp_ms)


class Redeliveries:
    """Which messages of a batch the engine has learned already: those at offsets it has
    passed (``position``: the offset of the next message it has not seen) that are the very
    messages learned there (:class:`Delivered`), or, from further back than that remembers,
    whose partition's log the broker says is the one learned (``log_check``, asked once per
    partition and position: the timestamp of the last message learned, ``stamp``, there
    again). Without ``log_check``, or without an answer, such messages are learned again (at
    least once).

    Examples
    --------
    >>> import asyncio
    >>> from types import SimpleNamespace as Msg
    >>> offsets = {}
    >>> r = Redeliveries(lambda t, p: offsets.get((t, p), 0), lambda t, p: None)
    >>> first = [Msg(topic="clicks", partition=0, offset=n, timestamp=10.0 + n) for n in range(3)]
    >>> for m in first:
    ...     r.add(m, stamp_ms(m)); offsets[("clicks", 0)] = m.offset + 1
    >>> again = first[1:] + [Msg(topic="clicks", partition=0, offset=3, timestamp=13.0)]
    >>> [m.offset for m in again if id(m) in asyncio.run(r.learned(again))]
    [1, 2]
    >>> other = [Msg(topic="clicks", partition=0, offset=1, timestamp=99.0)]  # another log
    >>> asyncio.run(r.learned(other))
    set()
    """

    def __init__(
        self,
        position: Callable[[str, int], int],
        stamp: Callable[[str, int], int | None],
        log_check: LogCheck | None = None,
        size: int = REMEMBERED,
    ) -> None:
        self.delivered = Delivered(size)
        self.log_check = log_check
        self._position, self._stamp = position, stamp
        #: per partition, the position its log was checked at and whether it was the same
        self._same_log: dict[Partition, tuple[int, bool]] = {}

    async def learned(self, messages: Sequence[Located]) -> set[int]:
        """The ``id()`` of each of ``messages`` learned already (none, but after a rebalance)."""
        behind = [m for m in messages if m.offset < self._position(m.topic, m.partition)]
        if not behind:
            return set()
        if self.log_check is not None:  # further back than the ring: the broker
            unsure = [m for m in behind if not self.delivered.holds(m.topic, m.partition, m.offset)]
            await self._check_logs({(m.topic, m.partition) for m in unsure})
        return {id(m) for m in behind if self._again(m)}

    def add(self, message: Located, stamp: int) -> None:
        """``message``, stamped ``stamp`` ms (:func:`stamp_ms`), is learned (or passed:
        dead-lettered)."""
        self.delivered.add(message.topic, message.partition, message.offset, stamp)

    def _again(self, message: Located) -> bool:
        t, p, offset = message.topic, message.partition, message.offset
        if self.delivered.holds(t, p, offset):
            return self.delivered.seen(t, p, offset, stamp_ms(message))
        return self._same_log.get((t, p)) == (self._position(t, p), True)

    async def _check_logs(self, partitions: set[Partition]) -> None:
        """Ask the broker, once per partition and position, whether its log is the one the
        engine learned: the timestamp of the last message learned, there again."""
        positions = {(t, p): self._position(t, p) for t, p in partitions}
        ask = {
            tp: position - 1
            for tp, position in positions.items()
            if self._same_log.get(tp, (-1, False))[0] != position
        }
        if not ask or self.log_check is None:
            return
        try:
            found = await self.log_check(ask)
        except Exception as exc:  # the broker gone: learned again (at least once), as before
            log.warning("the broker's log not checked (%s): messages passed are learned", exc)
            found = {}
        for (t, p), last in ask.items():
            known = self._stamp(t, p)
            same = known is not None and found.get((t, p)) == known
            self._same_log[(t, p)] = (last + 1, same)
            verdict = "the log learned: skipped" if same else "another log (or no answer): learned"
            log.warning(
                "%s[%d] delivered again from further back than the last %d messages learned; "
                "below offset %d, %s", t, p, self.delivered.size, last + 1, verdict,
            )  # fmt: skip
