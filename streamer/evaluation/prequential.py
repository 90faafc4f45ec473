"""The prequential scoreboard of one model: ratings, rankings and the list audit together."""

from __future__ import annotations

from typing import Any

from streamer.evaluation.metrics import ListAudit, RankingMetrics, RatingMetrics


class Prequential:
    """Metrics of predictions made before learning (Gama et al., prequential evaluation).

    >>> p = Prequential(k=2)
    >>> p.ratings.update(3.5, 4.0); p.ranking.update(7, [7, 8])
    >>> r = p.report(catalogue_size=10)
    >>> r["rmse"], r["hit_rate"], r["k"]
    (0.5, 1.0, 2)
    """

    def __init__(self, k: int = 10) -> None:
        self.k = k
        self.ratings = RatingMetrics()
        self.ranking = RankingMetrics(k)
        self.audit = ListAudit(0, k)

    def report(self, catalogue_size: int) -> dict[str, Any]:
        self.audit.catalogue_size = catalogue_size
        return {
            "k": self.k,
            **self.ratings.report(),
            **self.ranking.report(),
            **self.audit.report(),
        }
