"""The prequential scoreboard of one model: ratings, rankings and the list audit together.

A :class:`Prequential` watches an engine from outside (one of ``Engine.observers``): the engine
tells its observers each positive with the list its user had just before, and each rating
with the prediction made just before it was learned; the engine itself knows nothing of
metrics. :func:`watched` attaches one, :func:`scoreboard` finds it, :func:`metrics_report`
joins its figures to the engine's own.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence, Sized
from typing import TYPE_CHECKING, Any

import numpy as np

from streamer.evaluation.metrics import ListAudit, RankingMetrics, RatingMetrics

if TYPE_CHECKING:
    from streamer.engine import Engine


class Prequential:
    """Metrics of predictions made before learning (Gama et al., prequential evaluation).

    ``counts`` (interactions per item), ``tags`` (per item) and ``users`` (its ``len``) are
    the live figures the list audit reads: novelty and popularity of what is shown, diversity
    by tag.

    >>> p = Prequential(k=2, counts={7: 3}, tags={7: ("a",), 8: ("b",)}, users=[1, 2, 3])
    >>> p.rating("u", 3.5, 4.0); p.positive("u", 7, (7, 8))
    >>> r = p.report(catalogue_size=10)
    >>> r["rmse"], r["hit_rate"], r["k"], r["intra_list_diversity"], r["coverage"]
    (0.5, 1.0, 2, 1.0, 0.2)
    """

    def __init__(
        self,
        k: int = 10,
        counts: Mapping[Any, float] | None = None,
        tags: Mapping[Any, Sequence[str]] | None = None,
        users: Sized = (),
    ) -> None:
        self.k = k
        self.ratings = RatingMetrics()
        self.ranking = RankingMetrics(k)
        self.audit = ListAudit(0, k)
        self.counts: Mapping[Any, float] = {} if counts is None else counts
        self.tags: Mapping[Any, Sequence[str]] = {} if tags is None else tags
        self.users = users

    def positive(self, user: str, item: Any, shown: Sequence[Any]) -> None:
        """``user`` chose ``item`` while their list was ``shown``."""
        self.ranking.update(item, shown)
        self.audit.update(shown, self.counts, self.tags, len(self.users))

    def rating(self, user: str, predicted: float, actual: float) -> None:
        """``user``'s rating ``actual``, predicted ``predicted`` before it was learned."""
        self.ratings.update(predicted, actual)

    def renumber(self, mapping: np.ndarray) -> None:
        """The catalogue's ids were renumbered (``Engine.compact``)."""
        self.audit.renumber(mapping)

    def report(self, catalogue_size: int) -> dict[str, Any]:
        self.audit.catalogue_size = catalogue_size
        return {
            "k": self.k,
            **self.ratings.report(),
            **self.ranking.report(),
            **self.audit.report(),
        }


def watching(engine: Engine) -> Prequential:
    """A new scoreboard over ``engine``'s figures (not attached: see :func:`watched`)."""
    k = engine.settings.eval_k
    return Prequential(k, engine.item_counts, engine.catalogue.tags, engine.users)


def watched(engine: Engine) -> Engine:
    """``engine`` with a scoreboard among its observers (one already there is kept).

    >>> from streamer.settings import Settings
    >>> from streamer.engine import Engine
    >>> engine = watched(Engine(Settings(n_factors=4)))
    >>> scoreboard(engine) is scoreboard(watched(engine))
    True
    """
    if not any(isinstance(o, Prequential) for o in engine.observers):
        engine.observers.append(watching(engine))
    return engine


def scoreboard(engine: Engine) -> Prequential:
    """The first scoreboard watching ``engine`` (one is attached if none is)."""
    return next(o for o in watched(engine).observers if isinstance(o, Prequential))


def metrics_report(engine: Engine) -> dict[str, Any]:
    """``engine``'s prequential figures (its scoreboard's) with its own (guards, policy...)."""
    return scoreboard(engine).report(len(engine.catalogue)) | engine.report()
