"""The strategies named by ``Settings.strategies``, built over the engine's shared state."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

from index.base import ItemIndex
from streamer.model import RecModel
from streamer.popularity import Popularity
from streamer.settings import Settings
from streamer.strategies.base import Strategy
from streamer.strategies.fresh import FreshItems
from streamer.strategies.item_knn import CoCounts, ItemKNN
from streamer.strategies.neural import ItemFeatures, Neural
from streamer.strategies.personal import Personal, QueryFeatures
from streamer.strategies.popular import PopularInContext
from streamer.strategies.recent import RecentItems

NAMES = ("personal", "similar", "near", "recent", "popular", "fresh", "neural")


def make_strategies(
    settings: Settings,
    model: RecModel,
    index: ItemIndex,
    popularity: Popularity[int],
    query_features: QueryFeatures,
    item_features: ItemFeatures,
) -> list[Strategy]:
    """One strategy per name in ``settings.strategies``, in that order."""
    unknown = set(settings.strategies) - set(NAMES)
    if unknown:
        raise ValueError(f"unknown strategies {sorted(unknown)}; expected some of {NAMES}")
    # the two item-kNN strategies count co-occurrences in one table (one pass for both windows)
    counts = CoCounts([settings.knn_window, settings.knn_near_window], settings.knn_neighbours)
    knn = partial(ItemKNN, last=settings.knn_last, counts=counts, decay=settings.knn_decay)
    build: dict[str, Callable[[], Strategy]] = {
        "personal": lambda: Personal(model, index, query_features),
        "similar": lambda: knn(window=settings.knn_window, name="similar"),
        "near": lambda: knn(window=settings.knn_near_window, name="near"),
        "recent": RecentItems,
        "popular": lambda: PopularInContext(popularity=popularity, name="popular"),
        "fresh": lambda: FreshItems(settings.fresh_items, max_age=settings.new_item_events),
        "neural": lambda: Neural(item_features, seed=settings.seed),
    }
    return [build[name]() for name in settings.strategies]
