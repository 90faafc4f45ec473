"""`streamrec evaluate --ab`: a stable split, intervals that cover the truth about as often as
they say, and two arms that partition the users."""

from __future__ import annotations

import numpy as np

from streamer.evaluation.ab import arm_of, ratio_ci, run_ab
from streamer.replay.record import LogRecord
from streamer.settings import Settings


def test_the_interval_over_users_covers_the_truth_about_95_percent_of_the_time() -> None:
    rng = np.random.default_rng(0)
    truth, covered, runs = 0.3, 0, 400
    for _ in range(runs):
        users = 200
        rates = rng.beta(3, 7, users)  # users differ (mean 0.3): their events are correlated
        events = rng.integers(1, 40, users)
        hits = rng.binomial(events, rates)
        # the truth of this population: the event-weighted mean rate, 0.3 in expectation
        _, (low, high) = ratio_ci(hits.tolist(), events.tolist())
        covered += low <= truth <= high
    assert 0.9 <= covered / runs <= 0.99


def test_arms_partition_the_users_and_keep_them() -> None:
    assert {arm_of(str(u), 0.5) for u in range(100)} == {"a", "b"}
    assert [arm_of(str(u), 0.0) for u in range(50)] == ["a"] * 50
    rng = np.random.default_rng(1)
    records = [
        LogRecord("items", f"i{i}", {"item": f"i{i}", "tags": [f"g{i % 3}"], "ts": 0.0}, 0.0)
        for i in range(30)
    ]
    for t in range(1500):
        user, item = f"u{rng.integers(60)}", f"i{rng.integers(30)}"
        value = {"user": user, "item": item, "type": "rating", "value": 4.0, "ts": float(t + 1)}
        records.append(LogRecord("clicks", user, value, float(t + 1)))
    settings = Settings(n_factors=4, top_k=10, candidates=10)
    result = run_ab(records, settings, {"knn_decay": 1.0}, share_b=0.5)
    a, b = result["arms"]["a"], result["arms"]["b"]
    assert a["users"] + b["users"] == 60 and a["users"] and b["users"]
    assert a["positives"] + b["positives"] == 1500 and a["ratings"] + b["ratings"] == 1500
    for arm in (a, b):
        low, high = arm["hit_rate_ci95"]
        assert 0 <= low <= arm["hit_rate"] <= high <= 1
