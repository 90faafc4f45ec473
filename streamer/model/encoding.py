"""A feature side (a user with their context, an item with its content) as rows of the two
factorization machines of :class:`streamer.model.recmodel.RecModel`: the ranker's, and the
rater's with side features weighted down."""

from __future__ import annotations

import numpy as np

from streamer.features import ITEM_PREFIX, USER_PREFIX, Features
from streamer.model.fast_fm import FastFMClassifier, FastFMRegressor
from streamer.model.sgd_kernel import Parts


class Encoded:
    """One side's features as rows of the ranker and, side-weighted, of the rater."""

    __slots__ = ("ranking", "rating")

    def __init__(
        self, features: Features, ranker: FastFMClassifier, rater: FastFMRegressor, side: float
    ) -> None:
        self.ranking = ranker.encode(features)
        self.rating = rater.table.rows(features), np.array(rating_values(features, side))


class QuerySides:
    """A batch's query sides encoded end to end, as the ranker's rows and, side-weighted (see
    :class:`Encoded`), the rater's: one array each for the batch, not four per event.

    Examples
    --------
    >>> from streamer.model.fast_fm import FastFMClassifier, FastFMRegressor
    >>> ranker, rater = FastFMClassifier(n_factors=2), FastFMRegressor(n_factors=2)
    >>> sides = QuerySides(ranker, rater, side=0.5)
    >>> sides.add({"user=a": 1.0, "device=tv": 1.0}); sides.add({"user=b": 1.0})
    >>> ranking = sides.ranking()
    >>> ranking.rows_of(1).tolist(), ranking.xs.tolist()
    ([2], [1.0, 1.0, 1.0])
    >>> rating = sides.rating([0])
    >>> rating.xs[rating.starts[0] : rating.stops[0]].tolist()  # device=tv weighs 0.5 here
    [1.0, 0.5]
    """

    __slots__ = ("_ends", "_ranker", "_rated_rows", "_rated_xs", "_rater", "_rows", "_side", "_xs")

    def __init__(self, ranker: FastFMClassifier, rater: FastFMRegressor, side: float) -> None:
        self._ranker, self._rater, self._side = ranker.table, rater.table, side
        self._rows: list[int] = []
        self._xs: list[float] = []
        self._rated_rows: list[int] = []
        self._rated_xs: list[float] = []
        self._ends = [0]

    def add(self, x: Features) -> None:
        """The next event's query side (rows created for new features, in both models)."""
        self._ranker.extend_rows(x, self._rows)
        self._rater.extend_rows(x, self._rated_rows)
        self._xs.extend(x.values())
        self._rated_xs.extend(rating_values(x, self._side))
        self._ends.append(len(self._rows))

    def ranking(self) -> Parts:
        """Every event's query side, as the ranker's parts."""
        ends = np.array(self._ends, np.int64)
        return Parts(np.array(self._rows, np.int64), np.array(self._xs), ends[:-1], ends[1:])

    def rating(self, events: list[int]) -> Parts:
        """The query sides of ``events``, as the rater's parts."""
        ends = np.array(self._ends, np.int64)
        at = np.array(events, np.int64)
        rows, xs = np.array(self._rated_rows, np.int64), np.array(self._rated_xs)
        return Parts(rows, xs, ends[at], ends[at + 1])


_OWN = (USER_PREFIX, ITEM_PREFIX)  # a side's id features: full weight in the rater


def rating_values(x: Features, side: float) -> list[float]:
    """A side's values in the rating model: side features (context, content) weigh ``side``;
    shared by many events, at full weight they take steps too large for SGD."""
    return [v if f.startswith(_OWN) else v * side for f, v in x.items()]
