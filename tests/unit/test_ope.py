"""Off-policy estimates against known answers: simulated logs whose true value is exact, and
the Open Bandit Dataset's two logged policies."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from streamer.evaluation.ope import (
    OBD_WHEEL,
    by_slot,
    empirical_policy,
    estimates,
    obd_report,
    on_policy,
    read_obd,
    simulate,
    true_value,
)

OBD = Path(os.environ.get("STREAMREC_OBD", Path(__file__).parents[2] / ".venv/share" / OBD_WHEEL))


def test_intervals_cover_the_true_value_about_as_often_as_they_say() -> None:
    runs, covered = 300, {"ips": 0, "snips": 0, "dr": 0}
    errors: dict[str, list[float]] = {name: [] for name in covered}
    truth = 0.0
    for seed in range(runs):
        log, target_of, theta = simulate(np.random.default_rng(seed), 2000)
        truth = true_value(theta, target_of)
        for name, found in estimates(log, target_of(log.contexts)).items():
            covered[name] += found.covers(truth)
            errors[name].append(found.value - truth)
    for name, n in covered.items():
        assert 0.90 <= n / runs <= 0.99, (name, n / runs)
        assert abs(np.mean(errors[name])) < 0.1 * np.std(errors[name]), name  # no bias to see
    # the target is far from the logging policy (its value is not the log's own rate)
    assert truth - on_policy(simulate(np.random.default_rng(0), 20000)[0]).value > 0.05


def test_a_policy_that_is_the_logging_policy_is_estimated_at_the_log_s_own_rate() -> None:
    log, _, _ = simulate(np.random.default_rng(5), 4000)
    logging = np.zeros((len(log), log.n_actions))
    logging[np.arange(len(log)), log.actions] = log.propensities  # w = 1 on every row
    found = estimates(log, np.where(logging > 0, logging, 0.0))
    assert found["ips"].value == pytest.approx(on_policy(log).value)
    assert found["snips"].value == pytest.approx(on_policy(log).value)


def test_rows_the_logging_policy_could_not_have_logged_are_refused() -> None:
    log, target_of, _ = simulate(np.random.default_rng(0), 100)
    broken = log.rows(np.arange(100))
    broken.propensities[3] = 0.0
    with pytest.raises(ValueError, match="propensity of 0"):
        estimates(broken, target_of(broken.contexts))


@pytest.mark.skipif(not OBD.exists(), reason=f"no {OBD} (make unit downloads it)")
def test_thompson_sampling_estimated_from_the_random_log_lands_in_its_own_interval() -> None:
    random_log, bts_log = read_obd(OBD, "random"), read_obd(OBD, "bts")
    assert len(random_log) == len(bts_log) == 10_000 and random_log.n_actions == 80
    assert np.allclose(random_log.propensities, 1 / 80)  # uniform over the 80 items
    truth = on_policy(bts_log)
    target = by_slot(empirical_policy(bts_log), random_log)
    for name, found in estimates(random_log, target).items():
        assert truth.low <= found.value <= truth.high, (name, found, truth)
    report = obd_report(OBD)
    assert all(report["bts_from_random"]["within_bts_interval"].values())
    for policy in ("streamrec popular", "streamrec popular in context"):
        assert set(report[policy]) == {"ips", "snips", "dr"}
