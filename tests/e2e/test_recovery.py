"""kill -9 mid-stream, restart: the worker resumes from its snapshot and ends where an
uninterrupted run on the same events ends (each event learned once)."""

from __future__ import annotations

import dataclasses
import json
import signal
import time
import uuid
from pathlib import Path

import numpy as np
import psutil
import pytest

from streamer import snapshot
from streamer.engine import Engine
from streamer.evaluation.runner import decode
from streamer.recommender import Request
from streamer.replay.producer import replay
from tests.e2e.conftest import (
    DATASET,
    progress,
    rec_list,
    start_worker,
    wait_for,
    worker_on_the_catalogue,
)

pytestmark = [pytest.mark.e2e, pytest.mark.chaos]

RATINGS = 100_000  # all of MovieLens-100K


def _newest(settings) -> snapshot.Snapshot | None:
    found = sorted(settings.snapshot_path.glob("snapshot-*.npz"))
    if not found:
        return None
    try:
        return snapshot.load(found[-1], settings)[1]
    except snapshot.SnapshotError:  # being replaced right now
        return None


@pytest.mark.skipif(not DATASET.exists(), reason="MovieLens-100K not found")
def test_kill_9_then_restart_learns_every_event_once(stack):
    uid = uuid.uuid4().hex[:8]
    settings = dataclasses.replace(
        stack.isolated(f"crash-{uid}"),
        partitions=1,  # one order of events, the same in the reference run
        log_interval_s=1.0,
        snapshot_interval_s=3.0,
    )
    log = Path(settings.state_dir) / f"worker-{uid}.log"
    items, ratings, client, first = worker_on_the_catalogue(settings, RATINGS, log)
    try:
        replay(ratings, settings, progress=False)
        # a snapshot taken past a point drawn in the stream's first three quarters, then a kill
        # at a moment the test does not choose
        rng = np.random.default_rng()
        past = int(rng.integers(RATINGS // 10, 3 * RATINGS // 4))
        wait_for(
            lambda: (s := _newest(settings)) and past <= s.events - 1682 < RATINGS, timeout=180
        )
        time.sleep(float(rng.uniform(0.0, 2.0)))
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=10)
    at_kill = _newest(settings)
    assert at_kill is not None
    learned_before_kill = at_kill.events

    restarted_at, restarted_wall = time.monotonic(), time.time()
    second = start_worker(settings, log)
    try:
        # the first batch published by the new worker (its progress is written with its lists)
        wait_for(lambda: progress(client, settings).get("ts", 0) > restarted_wall, timeout=120)
        first_list_s = time.monotonic() - restarted_at
        user = json.loads(ratings[-1].payload())["user"]
        wait_for(lambda: rec_list(client, settings, user), timeout=240)
        # every event in, by what was produced (Tansu's high watermarks are short)
        done = {settings.topic_clicks: {0: RATINGS}, settings.topic_items: {0: 1682}}
        wait_for(lambda: (s := _newest(settings)) and s.offsets == done, timeout=240)
    finally:
        stopped_at = time.time()
        second.send_signal(signal.SIGTERM)
        code = second.wait(timeout=30)
        stop_s = time.time() - stopped_at
    assert code == 0, f"worker exited {code}; see {log}"
    found = snapshot.load_latest(settings.snapshot_path, settings)
    assert found is not None
    crashed, final = found
    # SIGTERM: a final snapshot, then the exit (its time is reported, not asserted: a shared,
    # noisy machine; the worker's own watchdog ends a stop that hangs for 15 s, exit code 1)
    assert final.created >= stopped_at and final.offsets == done
    print(
        f"snapshot at kill: {learned_before_kill} events; first lists {first_list_s:.1f} s after "
        f"the restart; final snapshot {snapshot.describe(final)}, exit {stop_s:.1f} s after SIGTERM"
    )

    # The reference: one uninterrupted engine over the same events in the same order (the
    # replay's: items, then ratings in time order, which decode's stable sort by time keeps).
    events, _ = decode(items + ratings, settings)
    reference = Engine(settings)
    for n in range(0, len(events), 500):
        reference.process(events[n : n + 500])

    assert crashed.events == reference.events == 1682 + RATINGS  # each event learned once
    assert len(crashed.catalogue) == len(reference.catalogue) == 1682
    assert crashed.model.version == reference.model.version
    for name in ("weights", "latents"):
        for side in ("ranker", "rater"):
            mine = getattr(getattr(crashed.model, side).table, name)
            theirs = getattr(getattr(reference.model, side).table, name)
            np.testing.assert_allclose(mine, theirs, rtol=1e-9, atol=1e-12)
    users = sorted({json.loads(r.payload())["user"] for r in ratings})[:25]
    for u in users:
        assert list(crashed.users.history(u)) == list(reference.users.history(u))
        for item in range(0, 1682, 97):
            assert crashed.score(u, {}, item) == pytest.approx(reference.score(u, {}, item))
    assert crashed.popularity.counts() == reference.popularity.counts()
    # what users are proposed and told: every strategy's candidates (the FM's through its
    # score above: the index is refreshed on the batches' rhythm), the same predicted ratings.
    # The fused order is the policy's, which learns from the lists users were shown, made at
    # the end of each micro-batch: it differs between any two runs, a crash or not.
    requests = [Request(u, {"device": "tv"}, 0.0) for u in users]
    proposed = [crashed.recommender.proposals(requests), reference.recommender.proposals(requests)]
    for strategy, mine, theirs in zip(crashed.strategies, *proposed, strict=True):
        if strategy.name != "personal":
            assert mine == theirs, strategy.name
    for u in users[:5]:
        user_x = crashed.query_features(u, {})
        for item in range(0, 1682, 211):
            item_x = crashed.catalogue.features(item)
            assert crashed.model.predict_rating(user_x, item_x) == pytest.approx(
                reference.model.predict_rating(user_x, item_x)
            )


@pytest.mark.skipif(not DATASET.exists(), reason="MovieLens-100K not found")
def test_the_engines_process_killed_the_worker_exits_and_its_restart_learns_every_event_once(
    stack,
):
    """The engine lives in a process of its own (``STREAMREC_ENGINE_PROCESS``): killed, the
    worker cannot go on without it and exits 1; restarted, it resumes from the last snapshot
    and ends where an uninterrupted engine ends."""
    uid = uuid.uuid4().hex[:8]
    settings = dataclasses.replace(
        stack.isolated(f"engine-{uid}"), partitions=1, log_interval_s=1.0, snapshot_interval_s=2.0
    )
    log = Path(settings.state_dir) / f"worker-{uid}.log"
    rated = 20_000
    items, ratings, _, first = worker_on_the_catalogue(settings, rated, log)
    try:  # killed past a snapshot, with events learned since and events still to come
        replay(ratings[: rated // 2], settings, progress=False)
        wait_for(lambda: (s := _newest(settings)) and s.events >= 1682 + rated // 8, timeout=120)
        _engine_of(first).kill()
        code = first.wait(timeout=30)
    finally:
        if first.poll() is None:
            first.kill()
    assert code == 1, f"worker exited {code}; see {log}"
    assert "the engine's process ended" in log.read_text()
    at_kill = _newest(settings)
    assert at_kill is not None and at_kill.events < 1682 + rated

    replay(ratings[rated // 2 :], settings, progress=False)
    second = start_worker(settings, log)
    done = {settings.topic_clicks: {0: rated}, settings.topic_items: {0: 1682}}
    try:
        engine = wait_for(lambda: _engine_of(second), timeout=60)
        wait_for(lambda: (s := _newest(settings)) and s.offsets == done, timeout=180)
    finally:
        second.send_signal(signal.SIGTERM)
        code = second.wait(timeout=30)
    assert code == 0, f"worker exited {code}; see {log}"
    assert not engine.is_running()  # it ended with its worker
    found = snapshot.load_latest(settings.snapshot_path, settings)
    assert found is not None
    restarted = found[0]
    events, _ = decode(items + ratings, settings)
    reference = Engine(settings)
    for n in range(0, len(events), 500):
        reference.process(events[n : n + 500])
    assert restarted.events == reference.events == 1682 + rated  # each event learned once
    for side in ("ranker", "rater"):
        np.testing.assert_allclose(
            getattr(restarted.model, side).table.latents,
            getattr(reference.model, side).table.latents,
            rtol=1e-9,
            atol=1e-12,
        )


def _engine_of(worker) -> psutil.Process | None:
    """The engine's process of ``worker`` (``python -m streamer.hosts``), None before it
    started."""
    engines = [p for p in psutil.Process(worker.pid).children() if "streamer.hosts" in p.cmdline()]
    assert len(engines) <= 1, engines
    return engines[0] if engines else None
