"""The item catalogue: string item ids <-> dense int64 index ids, metadata, item features."""

from __future__ import annotations

import bisect
from collections.abc import Container, Iterable

import numpy as np

from streamer.events import ItemEvent
from streamer.features import Features, item_features


class Catalogue:
    """Every item seen on the ``items`` or ``clicks`` topic, with its content features.

    Examples
    --------
    >>> c = Catalogue()
    >>> c.add_metadata(ItemEvent(item="m1", ts=0.0, title="Alien", tags=["Sci-Fi"]))
    0
    >>> c.id_of("m2"), c.item_of(1), len(c)
    (1, 'm2', 2)
    >>> sorted(c.features(0))
    ['item=m1', 'tag=sci-fi', 'word=alien']
    """

    def __init__(self) -> None:
        self._ids: dict[str, int] = {}
        self._items: list[str] = []
        self._features: list[Features] = []
        self._added: list[int] = []
        self.clock = 0  # the engine's event count, stamped on each new item
        self.tags: dict[int, tuple[str, ...]] = {}
        #: expired items: out of the index and every list until they are seen again (their
        #: id and metadata are kept until the catalogue is compacted: :meth:`compact`)
        self.retired: set[int] = set()

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, item: str) -> bool:
        return item in self._ids

    def id_of(self, item: str) -> int:
        """The index id of ``item``, assigned on first sight."""
        index_id = self._ids.get(item)
        if index_id is None:
            index_id = len(self._items)
            self._ids[item] = index_id
            self._items.append(item)
            self._features.append(item_features(item))
            self._added.append(self.clock)
        return index_id

    def first_added_since(self, clock: int) -> int:
        """The first index id stamped at ``clock`` or later (ids are stamped in order).

        >>> c = Catalogue(); _ = c.id_of("a"); c.clock = 5; _ = c.id_of("b")
        >>> c.first_added_since(3), c.first_added_since(6)
        (1, 2)
        """
        return bisect.bisect_left(self._added, clock)

    def item_of(self, index_id: int) -> str:
        return self._items[index_id]

    def features(self, index_id: int) -> Features:
        return self._features[index_id]

    def features_of(self, ids: Iterable[int]) -> list[Features]:
        """:meth:`features` of each of ``ids``."""
        features = self._features
        return [features[i] for i in ids]

    def names_of(self, ids: Iterable[int], leaving_out: Container[int] = ()) -> list[str]:
        """The names of ``ids`` (:meth:`item_of`), those in ``leaving_out`` left out."""
        names = self._items
        return [names[i] for i in ids if i not in leaving_out]

    def add_metadata(self, event: ItemEvent) -> int:
        """Record an item's title, tags and text; returns its index id."""
        index_id = self.id_of(event.item)
        self._features[index_id] = item_features(
            event.item, event.tags, f"{event.title} {event.text}"
        )
        self.tags[index_id] = tuple(event.tags)
        return index_id

    def compact(self) -> np.ndarray:
        """Drop the expired items (``retired``: name, features, tags) and renumber the others
        in their order (ids stay in age order); returns ``mapping``, old id -> new id, -1 for
        a dropped one. An item dropped here that comes back is a new item.

        >>> c = Catalogue()
        >>> for name in "abc":
        ...     _ = c.add_metadata(ItemEvent(item=name, ts=0.0, tags=[name]))
        >>> c.retired.add(1)
        >>> c.compact().tolist(), [c.item_of(i) for i in range(len(c))], c.tags, c.id_of("b")
        ([0, -1, 1], ['a', 'c'], {0: ('a',), 1: ('c',)}, 2)
        """
        mapping = np.full(len(self._items), -1, np.int64)
        kept = [i for i in range(len(self._items)) if i not in self.retired]
        mapping[kept] = np.arange(len(kept))
        self._items = [self._items[i] for i in kept]
        self._features = [self._features[i] for i in kept]
        self._added = [self._added[i] for i in kept]
        self._ids = {name: i for i, name in enumerate(self._items)}
        tags = {int(mapping[i]): t for i, t in self.tags.items() if mapping[i] >= 0}
        self.tags.clear()  # in place: observers hold this mapping
        self.tags.update(tags)
        self.retired.clear()
        return mapping
