"""Honest evaluation: prequential (predict first, then learn) metrics and audits."""

from streamer.evaluation.metrics import ListAudit, RankingMetrics, RatingMetrics

__all__ = ["ListAudit", "RankingMetrics", "RatingMetrics"]
