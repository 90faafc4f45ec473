"""Item-kNN's own list on a log, under `streamrec evaluate`'s protocol, for several ways of
weighing the user's recent items: how many (``last``) and how fast each step back loses weight
(``decay``; 1 is the plain item-kNN of the baselines).

    python -m benchmarks.knn_decay ../shared/datasets/movielens-100k
    python -m benchmarks.knn_decay /tmp/yoochoose.jsonl

At each positive (seen items excluded), is the chosen item in the top 10 of each variant, for
co-occurrences counted within the user's last 50 and last 10 items? One pass, one table.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from streamer.evaluation.runner import decode
from streamer.events import Click
from streamer.replay import open_log
from streamer.settings import Settings
from streamer.strategies import CoCounts, ItemKNN, Observation, Query

VARIANTS = [(5, 1.0), (5, 0.8), (5, 0.6), (10, 0.8), (10, 0.6), (20, 0.7)]
WINDOWS = (50, 10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("log", type=Path)
    parser.add_argument("--k", type=int, default=10)
    args = parser.parse_args()
    settings = Settings()
    events, _ = decode(open_log(args.log), settings)
    counts = CoCounts(WINDOWS, settings.knn_neighbours)
    knns = {
        (last, decay, window): ItemKNN(last, window, counts=counts, decay=decay)
        for last, decay in VARIANTS
        for window in WINDOWS
    }
    hits = dict.fromkeys(knns, 0)
    positives = 0
    ids: dict[str, int] = {}
    histories: dict[str, list[int]] = {}
    for event in events:
        if not isinstance(event, Click) or event.type == "skip":
            continue
        item = ids.setdefault(event.item, len(ids))
        history = histories.setdefault(event.user, [])
        if event.is_positive(settings.positive_rating):
            positives += 1
            queries = [Query(event.user, "", history[-max(WINDOWS) :], frozenset(history))]
            for key, knn in knns.items():
                (scored,) = knn.candidates(queries, args.k)
                hits[key] += any(i == item for i, _ in scored)
        counts.learn(Observation(event.user, item, "", history[-max(WINDOWS) :]))
        history.append(item)
    print(f"{args.log}: {positives:,} positives; HitRate@{args.k} for windows {WINDOWS}")
    for last, decay in VARIANTS:
        rates = " / ".join(f"{hits[(last, decay, w)] / positives:.4f}" for w in WINDOWS)
        print(f"last {last:>2}, decay {decay}: {rates}")


if __name__ == "__main__":
    main()
