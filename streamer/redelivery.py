"""Messages delivered again after a rebalance, told from new ones without asking the broker.

When partitions are assigned to a running worker again (another worker joined or left the
group, or its session lapsed), Faust resumes each at its last *committed* offset, which is up
to a commit interval behind what the engine has learned: those events would be learned twice.
Seeking to the engine's own offsets instead stalled Faust when the broker had lost its log (a
restart of the memory-only broker): the offsets it learned at are then other messages'.
:class:`Delivered` keeps, per partition, the offset and the Kafka timestamp of the last
messages learned; a message at an offset the engine has passed is a redelivery when it is the
one learned there (same timestamp), and new learning when it is not (another log). Further
back than it remembers, the pipeline asks the broker once whether the log is still the one it
learned (the timestamp of the last message learned, ``Pipeline.log_check``).
"""

from __future__ import annotations

import numpy as np

#: Messages remembered per partition: more than a commit interval's worth at any rate here.
REMEMBERED = 4096


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
