"""Personal: the factorization machine's top-K, read from the item index (one FAISS search)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from index.base import ItemIndex
from streamer.features import Features, user_feature
from streamer.model import RecModel
from streamer.strategies.base import Observation, Query, Scored

#: The query side of a user in a context (id, context, last items), as the model learns it.
QueryFeatures = Callable[[str, dict[str, str]], Features]


class Personal:
    """The ranker's inner-product top-K for the users it knows (``[1, q]`` against ``[b_i, e_i]``).

    The model learns in the engine's own step (one compiled call per batch), so ``learn`` has
    nothing to do; ``index`` is the engine's item index (replaced when the engine swaps it).
    """

    name = "personal"
    repeats = False

    def __init__(self, model: RecModel, index: ItemIndex, query_features: QueryFeatures) -> None:
        self.model, self.index, self.query_features = model, index, query_features

    def learn(self, observation: Observation) -> None:
        """The engine's compiled step learns the model."""

    def candidates(self, queries: Sequence[Query], k: int) -> list[Scored]:
        out: list[Scored] = [[] for _ in queries]
        known = [n for n, q in enumerate(queries) if self.model.knows(user_feature(q.user))]
        if not known or not len(self.index):
            return out
        vectors = self.model.query_vectors(
            [self.query_features(queries[n].user, dict(queries[n].context)) for n in known]
        )
        result = self.index.search(vectors, k, exclude=[queries[n].exclude for n in known])
        for row, n in enumerate(known):
            out[n] = result.row(row)
        return out
