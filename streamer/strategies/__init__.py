"""Candidate sources: each proposes scored items for a user in a context, behind one protocol.

The policy (:mod:`streamer.policy`) fuses their lists into the list a user is shown.
"""

from streamer.strategies.base import Observation, Query, Renumbered, Scored, Strategy
from streamer.strategies.fresh import FreshItems
from streamer.strategies.item_knn import CoCounts, ItemKNN
from streamer.strategies.personal import Personal
from streamer.strategies.popular import PopularInContext
from streamer.strategies.recent import RecentItems

__all__ = [
    "CoCounts",
    "FreshItems",
    "ItemKNN",
    "Observation",
    "Personal",
    "PopularInContext",
    "Query",
    "RecentItems",
    "Renumbered",
    "Scored",
    "Strategy",
]
