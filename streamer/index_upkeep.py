"""The index of item vectors kept up to date with the model (FAISS behind ``index.base``).

Each batch re-upserts the items it touched, a round-robin slice of the catalogue in proportion
to the events learned (shared features - tags, words, context - move every item's vector), and
a slice of the young items (a cold item's vector is all content, and its content rows move
with every event on its genre). Each vector is ``[b_i + prior_i, e_i]``: the model's item
bias plus a popularity prior (what is popular now, with optimism for new items), still an
inner product with the query ``[1, q]``. Past ``large_index_min_items`` items, ``auto`` moves
to the approximate backend.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np

from index.base import ItemIndex
from index.exact import ExactIndex
from index.factory import make_index
from streamer.catalogue import Catalogue
from streamer.model import RecModel
from streamer.popularity import Popularity
from streamer.settings import Settings
from streamer.strategies import Personal

#: The most young items whose vectors each batch recomputes (round robin among them).
YOUNG_REFRESH = 256


class IndexUpkeep:
    """Keeps ``index`` in step with ``model``'s item vectors and the popularity prior.

    Examples
    --------
    >>> from streamer.events import ItemEvent
    >>> settings = Settings(n_factors=4)
    >>> model, catalogue = RecModel(settings), Catalogue()
    >>> for name in "abc":
    ...     model.add_item(catalogue.features(catalogue.add_metadata(ItemEvent(item=name, ts=0.0))))
    >>> upkeep = IndexUpkeep(settings, model, catalogue, Popularity())
    >>> upkeep.refresh([0, 2], events=0, clock=3)
    >>> sorted(upkeep.index.all_items()[0].tolist())
    [0, 1, 2]
    """

    def __init__(
        self,
        settings: Settings,
        model: RecModel,
        catalogue: Catalogue,
        popularity: Popularity[int],
        index: ItemIndex | None = None,
    ) -> None:
        self.settings, self.model, self.catalogue = settings, model, catalogue
        self.popularity = popularity
        self.index = index or make_index(
            settings.index_backend, model.dim, large_min_items=settings.large_index_min_items
        )
        self.personal: list[Personal] = []  # strategies searching the index (moved along)
        self._refresh_cursor = 0
        self._young_cursor = 0

    def refresh(self, touched: Iterable[int], events: int, clock: int) -> None:
        """Re-upsert ``touched`` items, the next round-robin slice of the catalogue (its size
        in proportion to the ``events`` just learned) and the next slice of the young items
        (``clock``: events learned so far)."""
        ids = set(touched)
        n = len(self.catalogue)
        chunk = min(n, int(self.settings.index_refresh_per_event * events))
        if n and chunk:
            # every item vector recomputed at least once every n / index_refresh_per_event events
            start = self._refresh_cursor % n
            ids.update(range(start, min(start + chunk, n)))
            self._refresh_cursor = start + chunk
        ids.update(self._young_slice(clock))
        ids -= self.catalogue.retired  # expired: out of the index until seen again
        if not ids:
            return
        order = np.fromiter(sorted(ids), np.int64, len(ids))
        vectors = self.model.item_vectors([self.catalogue.features(int(i)) for i in order])
        vectors[:, 0] += self.prior(order, clock)
        self.index.upsert(order, vectors)
        self._maybe_switch_to_large_index()

    def renumber(self, mapping: np.ndarray) -> None:
        """Item ids renumbered by ``mapping`` (``Engine.compact``): the index made again with
        the new ids and the vectors it holds (expired items are not in it)."""
        ids, vectors = self.index.all_items()
        new = mapping[ids]
        kept = new >= 0
        s = self.settings
        n = int(kept.sum())
        index = make_index(s.index_backend, self.model.dim, n, s.large_index_min_items)
        index.upsert(new[kept], vectors[kept])
        self._use(index)

    def remove(self, items: Sequence[int]) -> None:
        self.index.remove(np.asarray(items, np.int64))

    def prior(self, ids: np.ndarray, clock: int) -> np.ndarray:
        """``popularity_prior * log(1 + trending count)`` per item, added to the item bias: a
        blend of the model's logit with what is popular now, still an inner product."""
        weight = self.settings.popularity_prior
        if not weight:
            return np.zeros(len(ids), np.float32)
        counts = self.popularity.counts()
        trend = np.fromiter((counts.get(int(i), 0.0) for i in ids), np.float64, len(ids))
        # Optimism for new items: an item younger than new_item_events events counts at least
        # as the median item, so that a cold-start item gets shown and can earn its own count.
        if counts and self.settings.new_item_events:
            young = ids >= self._first_young(clock)
            if young.any():
                trend[young] = np.maximum(trend[young], float(np.median(list(counts.values()))))
        return (weight * np.log1p(trend)).astype(np.float32)

    def _young_slice(self, clock: int) -> range:
        """Up to ``YOUNG_REFRESH`` items younger than ``new_item_events``, round robin (the
        catalogue-wide round robin alone could leave a cold item with the vector it had on
        arrival, before anyone liked its genre, for n / 4 events)."""
        if not self.settings.new_item_events:
            return range(0)
        first = self._first_young(clock)
        young = len(self.catalogue) - first
        if young <= 0:
            return range(0)
        start = first + self._young_cursor % young
        stop = min(start + YOUNG_REFRESH, len(self.catalogue))
        self._young_cursor += stop - start
        return range(start, stop)

    def _first_young(self, clock: int) -> int:
        """The first index id younger than ``new_item_events`` events (ids are in age order)."""
        return self.catalogue.first_added_since(clock - self.settings.new_item_events + 1)

    def _maybe_switch_to_large_index(self) -> None:
        """``auto``: past ``large_index_min_items`` items, move to the approximate backend."""
        s = self.settings
        if s.index_backend != "auto" or not isinstance(self.index, ExactIndex):
            return
        if len(self.index) < s.large_index_min_items:
            return
        large = make_index("auto", self.model.dim, len(self.index), s.large_index_min_items)
        large.upsert(*self.index.all_items())  # findable at once; it builds meanwhile
        self._use(large)

    def _use(self, index: ItemIndex) -> None:
        """Serve from ``index`` from now on (the strategies that search it too)."""
        self.index = index
        for strategy in self.personal:
            strategy.index = index
