"""Which rating predictors blend well: prequential predictions of the factorization machine
(as the worker learns it) and of candidate partners, and the RMSE of each blend.

    python -m benchmarks.rating_mix ../shared/datasets/movielens-100k

Each predictor predicts every rating before learning it, over the log in time order; each pair
is blended by one weight learned online (:class:`RatingMix`), as the model does.
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path
from typing import Any

import numpy as np

from streamer.catalogue import Catalogue
from streamer.evaluation.runner import decode
from streamer.events import Click, ContextEvent, ItemEvent
from streamer.features import user_features
from streamer.model import RecModel
from streamer.model.neighbours import NeighbourRater
from streamer.model.rating_mix import RatingMix
from streamer.replay import open_log
from streamer.settings import Settings
from streamer.users import UserState

PARTNERS: dict[str, dict[str, Any]] = {
    "FM, 20 factors": {"n_factors": 20, "seed": 7},
    "FM, learning rate 0.03": {"rating_lr": 0.03},
    "FM, ids only": {"rating_side_weight": 0.0, "seed": 11},
}
NEIGHBOURS: dict[str, dict[str, Any]] = {
    "neighbours, last 30": {"last": 30},
    "neighbours, last 50 (default)": {},
    "neighbours, last 100": {"last": 100},
    "neighbours, 100 kept per item": {"max_neighbours": 100},
    "neighbours, shrinkage 20": {"shrink": 20.0},
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("log", type=Path)
    args = parser.parse_args()
    base = Settings(negatives=0, rating_neighbours=0)  # the FM alone; no ranking work
    events, _ = decode(open_log(args.log), base)
    fms = {"FM (the model's)": RecModel(base)} | {
        name: RecModel(dataclasses.replace(base, **change)) for name, change in PARTNERS.items()
    }
    knns = {name: NeighbourRater(**change) for name, change in NEIGHBOURS.items()}
    predictions: dict[str, list[float]] = {name: [] for name in (*fms, *knns)}
    truth: list[float] = []
    catalogue, users = Catalogue(), UserState(base.history_size)
    for event in events:
        if isinstance(event, ItemEvent):
            for fm in fms.values():
                fm.add_item(catalogue.features(catalogue.add_metadata(event)))
        elif isinstance(event, ContextEvent):
            users.set_context(event.user, event.context)
        elif isinstance(event, Click) and event.type == "rating" and event.value is not None:
            item = catalogue.id_of(event.item)
            previous = [catalogue.item_of(i) for i in users.recent(event.user, 3)]
            user_x = user_features(event.user, event.context, previous)
            for name, fm in fms.items():
                guess = fm.learn_one(user_x, catalogue.features(item), "rating", event.value, [])
                predictions[name].append(float(guess or 0.0))
            for name, knn in knns.items():
                predictions[name].append(knn.predict_one(event.user, item))
                knn.learn_one(event.user, item, event.value)
            truth.append(event.value)
            users.add(event.user, item)
    y = np.array(truth)
    own = np.array(predictions["FM (the model's)"])
    print(f"{args.log}: {len(y):,} ratings; prequential RMSE alone, and blended with the FM")
    for name, values in predictions.items():
        p = np.array(values)
        mix = RatingMix()
        blended = np.array([mix.learn(a, b, t) for a, b, t in zip(own, p, y, strict=True)])
        print(f"{name:32} alone {_rmse(p, y):.4f}   with the FM {_rmse(blended, y):.4f}")


def _rmse(p: np.ndarray, y: np.ndarray) -> float:
    return float(np.sqrt(np.mean((np.clip(p, 1.0, 5.0) - y) ** 2)))


if __name__ == "__main__":
    main()
