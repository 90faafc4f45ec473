"""``streamrec evaluate``: the worker's model and recommender over a log, without Kafka, in time
order, with reference models scored on the same events in the same pass."""

from __future__ import annotations

import time
from collections.abc import Collection, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from streamer.engine import Engine, Event
from streamer.evaluation.baselines import (
    GlobalMean,
    RiverRating,
    TruncatedSVD,
    list_baselines,
    river_baseline,
    river_biased_mf,
)
from streamer.evaluation.curve import tradeoff
from streamer.evaluation.groups import GroupFigures, groups_of
from streamer.evaluation.prequential import Prequential, scoreboard, watched, watching
from streamer.events import Click, InvalidEvent, ItemEvent, Validator
from streamer.popularity import context_key
from streamer.replay.record import LogRecord
from streamer.settings import Settings
from streamer.strategies import Observation, Query
from streamer.users import UserState

MODEL = "streamrec"
#: Metrics where larger is better, and where smaller is (for naming the best baseline).
HIGHER = ("hit_rate", "ndcg", "mrr", "coverage")
LOWER = ("rmse", "mae")


@dataclass
class Scoreboard:
    """A model's metrics over the whole stream and over its last part (the SVD's test set)."""

    all: Prequential
    tail: Prequential
    series: list[dict[str, Any]] = field(default_factory=list)

    def boards(self, in_tail: bool) -> list[Prequential]:
        return [self.all, self.tail] if in_tail else [self.all]

    def sample(self, n: int) -> None:
        self.series.append(
            {
                "events": n,
                "rolling_rmse": _num(self.all.ratings.rolling_rmse),
                "rolling_hit_rate": _num(self.all.ranking.rolling_hit_rate),
            }
        )


class References:
    """The baselines: rating predictors, list baselines (item-kNN, recent, popularity) and the
    batch SVD, all under the model's seen-items rule (``recent`` lists seen items by design)."""

    def __init__(self, settings: Settings, is_positive: Any) -> None:
        self.settings, self.is_positive, self.k = settings, is_positive, settings.eval_k
        self.raters: list[GlobalMean | RiverRating] = [
            GlobalMean(),
            river_baseline(),
            river_biased_mf(),
        ]
        self.rankers = list_baselines(settings)
        self.svd = TruncatedSVD()
        self.names = [r.name for r in (*self.raters, *self.rankers, self.svd)]
        self.boards = {
            name: Scoreboard(Prequential(self.k), Prequential(self.k)) for name in self.names
        }
        self.membership: dict[str, tuple[str, ...]] = {}  # user -> their groups
        self.groups = {name: GroupFigures(self.membership, self.k) for name in self.names}
        self.history = UserState(settings.history_size)
        self._ids: dict[str, int] = {}
        self._items: list[str] = []
        # the stream so far, for the list audit
        self.tags: dict[str, tuple[str, ...]] = {}
        self.counts: dict[str, float] = {}
        self.train: list[tuple[str, str, float]] = []

    @property
    def users(self) -> int:
        return len(self.history)

    def score(self, event: Click, in_tail: bool) -> None:
        """Predict with every reference model before any of them learns from ``event``."""
        rating = event.value if event.type == "rating" else None
        positive = self.is_positive(event)
        if event.context:
            self.membership[event.user] = groups_of(event.context)
        if rating is not None:
            for rater in self.raters:
                predicted = rater.predict(event.user, event.item)
                for board in self.boards[rater.name].boards(in_tail):
                    board.ratings.update(predicted, rating)
                self.groups[rater.name].rating(event.user, predicted, rating)
        if positive:
            history = self.history.history(event.user)
            exclude: Collection[int] = (
                frozenset() if self.settings.seen_items == "allow" else history
            )
            recent = self.history.recent(event.user, self.settings.knn_window)
            query = Query(event.user, self._bucket(event), recent, exclude, event.context)
            everything = Query(event.user, query.bucket, recent, frozenset(), event.context)
            queries, repeats = [query], [everything]  # one object each: shared passes reuse it
            for ranker in self.rankers:
                (scored,) = ranker.candidates(repeats if ranker.repeats else queries, self.k)
                self._ranked(ranker.name, event, [self._items[i] for i, _ in scored], in_tail)
        if in_tail and self.svd.fitted:
            if rating is not None:
                predicted = self.svd.predict(event.user, event.item)
                for board in self.boards[self.svd.name].boards(True):
                    board.ratings.update(predicted, rating)
                self.groups[self.svd.name].rating(event.user, predicted, rating)
            if positive:
                seen = {self._items[i] for i in self.history.history(event.user)}
                self._ranked(self.svd.name, event, self.svd.top_k(event.user, self.k, seen), True)

    def learn(self, event: Click, in_tail: bool) -> None:
        if event.type == "rating" and event.value is not None:
            for rater in self.raters:
                rater.learn(event.user, event.item, event.value)
            if not in_tail:
                self.train.append((event.user, event.item, event.value))
        if event.type != "skip":
            item = self._id(event.item)
            recent = self.history.recent(event.user, self.settings.knn_window)
            seen = Observation(event.user, item, self._bucket(event), recent)
            for ranker in self.rankers:
                ranker.learn(seen)
            self.history.add(event.user, item)
            self.counts[event.item] = self.counts.get(event.item, 0) + 1

    def _id(self, item: str) -> int:
        found = self._ids.get(item)
        if found is None:
            found = self._ids[item] = len(self._items)
            self._items.append(item)
        return found

    def _ranked(self, name: str, event: Click, shown: list[str], in_tail: bool) -> None:
        for board in self.boards[name].boards(in_tail):
            board.ranking.update(event.item, shown)
            board.audit.update(shown, self.counts, self.tags, self.users)
        self.groups[name].positive(event.user, event.item, shown)

    def _bucket(self, event: Click) -> str:
        return context_key(event.context, self.settings.pop_context_keys)


def best_baselines(models: dict[str, Any], segment: str = "all") -> dict[str, Any]:
    """Per metric, the best baseline, its value, the model's, and the model's ratio to it.

    >>> models = {MODEL: {"all": {"hit_rate": 0.3, "rmse": 0.9, "positives": 9, "ratings": 9}},
    ...           "a": {"all": {"hit_rate": 0.2, "rmse": 1.0, "positives": 9, "ratings": 9}},
    ...           "b": {"all": {"hit_rate": 0.1, "rmse": None, "positives": 9, "ratings": 0}}}
    >>> best_baselines(models)["hit_rate"]
    {'baseline': 'a', 'value': 0.2, 'model': 0.3, 'ratio': 1.5}
    >>> best_baselines(models)["rmse"]["ratio"]
    0.9
    """
    out: dict[str, Any] = {}
    mine = models[MODEL][segment]
    for metric in (*HIGHER, *LOWER):
        needs = "ratings" if metric in LOWER else "positives"
        scored = [
            (name, m[segment][metric])
            for name, m in models.items()
            if name != MODEL and m[segment].get(metric) is not None and m[segment].get(needs)
        ]
        if not scored or mine.get(metric) is None:
            continue
        pick = min if metric in LOWER else max
        name, value = pick(scored, key=lambda nv: nv[1])
        ratio = round(mine[metric] / value, 4) if value else None
        out[metric] = {"baseline": name, "value": value, "model": mine[metric], "ratio": ratio}
    return out


def decode(records: Iterable[LogRecord], settings: Settings) -> tuple[list[Event], int]:
    """Valid events in time order (stable), and how many records were invalid."""
    decoders = Validator(settings).decoders()
    events: list[Event] = []
    invalid = 0
    for record in records:
        try:
            events.append(decoders[record.kind](record.payload()))
        except InvalidEvent:
            invalid += 1
    events.sort(key=lambda e: e.ts)
    return events, invalid


def run_evaluation(
    records: Iterable[LogRecord],
    settings: Settings,
    batch_size: int = 1,
    tail_fraction: float = 0.2,
    sample_every: int = 1000,
    progress: bool = True,
    curve: tuple[str, Sequence[float]] | None = None,
) -> dict[str, Any]:
    """Run everything over ``records``; returns every metric of every model (JSON-ready).

    ``batch_size`` events go through the engine at a time, as a worker's micro-batch; with 1
    (the default), every list a metric scores is the one computed right after the user's
    previous event, as the popularity baseline's is. ``curve``: a re-ranker's setting and
    values, its trade-off over the same events (:mod:`streamer.evaluation.curve`; the run's
    own value is this run's engine).
    """
    from tqdm import tqdm

    started = time.monotonic()
    events, invalid = decode(records, settings)
    n_clicks = sum(isinstance(e, Click) for e in events)
    boundary = int(n_clicks * (1 - tail_fraction))
    engine = watched(Engine(settings))
    live = scoreboard(engine)
    live.ratings.pairs = []
    refs = References(settings, engine.is_positive)
    boards = {MODEL: Scoreboard(live, watching(engine)), **refs.boards}
    groups = {MODEL: GroupFigures(refs.membership, settings.eval_k), **refs.groups}
    engine.observers.append(groups[MODEL])  # the engine's positives and ratings, by group

    batch: list[Event] = []
    seen = 0
    for event in tqdm(events, unit="ev", disable=not progress, mininterval=0.5):
        if isinstance(event, Click):
            if seen == boundary:  # the last part starts: the batch SVD is fit on what came before
                engine.process(batch)
                batch = []
                engine.observers.append(boards[MODEL].tail)
                if refs.train:
                    refs.svd.fit(refs.train)
            refs.score(event, seen >= boundary)
            refs.learn(event, seen >= boundary)
            seen += 1
            if seen % sample_every == 0:
                for board in boards.values():
                    board.sample(seen)
        elif isinstance(event, ItemEvent):
            refs.tags[event.item] = tuple(event.tags)
        batch.append(event)
        if len(batch) >= batch_size:
            engine.process(batch)
            batch = []
    engine.process(batch)

    catalogue = len(engine.catalogue)
    models = {
        name: {"all": b.all.report(catalogue), "tail": b.tail.report(catalogue)}
        for name, b in boards.items()
    }
    policy = engine.recommender.policy
    return {
        "events": len(events),
        "invalid": invalid,
        "clicks": n_clicks,
        "tail_from_click": boundary,
        "catalogue": catalogue,
        "users": refs.users,
        "seconds": round(time.monotonic() - started, 1),
        "batch_size": batch_size,
        "settings": {k: v for k, v in asdict(settings).items() if not k.startswith("topic")},
        "models": models,
        "best_baselines": best_baselines(models),
        "policy": {
            "hit_rates": policy.hit_rates(),
            "mix": policy.mix(),
            "stacker": policy.stacker(),
        },
        "resets": engine.model.resets,
        "clamped": engine.model.clamped,
        "nonfinite": engine.model.nonfinite,
        "series": {name: b.series for name, b in boards.items()},
        "groups": {name: figures.report() for name, figures in groups.items()},
        "pairs": live.ratings.pairs,
        "recommended_counts": {
            engine.catalogue.item_of(int(i)): c for i, c in live.audit.counts.items()
        },
        "interaction_counts": refs.counts,
    } | _curve(events, settings, batch_size, curve, engine)


def _curve(
    events: Sequence[Event],
    settings: Settings,
    batch_size: int,
    curve: tuple[str, Sequence[float]] | None,
    engine: Engine,
) -> dict[str, Any]:
    if curve is None:
        return {}
    knob, values = curve
    done = {getattr(settings, knob): engine}
    return {
        "curve": {
            "knob": knob,
            "rows": tradeoff(events, settings, knob, values, batch_size, done=done),
        }
    }


def _num(value: float) -> float | None:
    return None if value != value else round(value, 4)
