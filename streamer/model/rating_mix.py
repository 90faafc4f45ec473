"""Two rating predictions blended by one weight learned online: the model's factorization
machine and its rating neighbourhood (``streamer.model.neighbours``)."""

from __future__ import annotations


class RatingMix:
    """Two rating predictions blended by one weight learned online (least mean squares):
    ``a + w (b - a)``, ``w`` starting at ``start`` and kept in [0, 1].

    >>> mix = RatingMix()
    >>> for _ in range(2000):
    ...     _ = mix.learn(4.0, 3.0, 3.2)  # b is nearly right: w grows towards 0.8
    >>> round(mix.weight, 2)
    0.8
    """

    def __init__(self, start: float = 0.5, lr: float = 0.005) -> None:
        self.weight, self.lr = start, lr

    def predict(self, a: float, b: float) -> float:
        return a + self.weight * (b - a)

    def learn(self, a: float, b: float, y: float) -> float:
        """Predict, then step towards ``y``; returns the prediction made before the step."""
        guess = self.predict(a, b)
        self.weight = min(1.0, max(0.0, self.weight + self.lr * (y - guess) * (b - a)))
        return guess
