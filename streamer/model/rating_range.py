"""The range of the ratings seen so far: predictions are clipped to it (prequentially)."""

from __future__ import annotations

import math


class RatingRange:
    """Clips predictions to the ratings seen so far, as River's ``PredClipper`` does with a
    range fixed in advance; before any rating, to ``default`` (if given).

    >>> r = RatingRange(default=(0.5, 5.0))
    >>> r.clip(7.0)
    5.0
    >>> r.see(1.0); r.see(4.0); r.clip(7.0), r.clip(0.0), r.clip(float("nan"))
    (4.0, 1.0, 2.5)
    """

    def __init__(self, default: tuple[float, float] = (-math.inf, math.inf)) -> None:
        self.default = default
        self.low, self.high = math.inf, -math.inf

    def see(self, y: float) -> None:
        self.low, self.high = min(self.low, y), max(self.high, y)

    def clip(self, y: float) -> float:
        seen = math.isfinite(self.low)
        low, high = (self.low, self.high) if seen else self.default
        if not math.isfinite(y):
            return (low + high) / 2 if math.isfinite(low) and math.isfinite(high) else 0.0
        return min(max(y, low), high)
