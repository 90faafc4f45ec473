"""The item catalogue: string item ids <-> dense int64 index ids, metadata, item features."""

from __future__ import annotations

import bisect

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
        #: id and metadata are kept)
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

    def add_metadata(self, event: ItemEvent) -> int:
        """Record an item's title, tags and text; returns its index id."""
        index_id = self.id_of(event.item)
        self._features[index_id] = item_features(
            event.item, event.tags, f"{event.title} {event.text}"
        )
        self.tags[index_id] = tuple(event.tags)
        return index_id
