"""Live A/B arms: each user served by their arm, clicks credited to the arm that served the
list, figures per arm with bounded memory, both arms' state in snapshots at the same offsets."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from streamer import snapshot
from streamer.arms import Arms
from streamer.evaluation.ab import ArmFigures, Split, ratio_ci
from streamer.events import Click, ItemEvent
from streamer.hosts import LocalHost
from streamer.pipeline import Pipeline
from streamer.publisher import RedisSink
from streamer.room import EngineRoom, arm_b_path
from streamer.settings import Settings

SETTINGS = Settings(n_factors=4, top_k=5, candidates=5, seed=1)


def _events(users: int = 40, clicks: int = 600, seed: int = 0) -> list[ItemEvent | Click]:
    rng = np.random.default_rng(seed)
    out: list[ItemEvent | Click] = [
        ItemEvent(item=f"i{i}", ts=0.0, tags=[f"g{i % 4}"]) for i in range(30)
    ]
    for t in range(clicks):
        user, item = f"u{rng.integers(users)}", f"i{rng.integers(30)}"
        out.append(Click(user=user, item=item, type="click", ts=float(t + 1)))
    return out


def test_each_user_gets_the_list_of_their_arm_and_both_arms_learn_everything() -> None:
    arms = Arms(SETTINGS, {"knn_last": 3}, share_b=0.5)
    events = _events()
    lists = []
    for at in range(0, len(events), 25):
        lists += arms.process(events[at : at + 25]).lists
    assert {r.arm for r in lists} == {"a", "b"}
    assert all(r.arm == arms.split(r.user) and r.rec_id.startswith(f"{r.arm}/") for r in lists)
    a, b = arms.engines["a"], arms.engines["b"]
    assert a.model.version == b.model.version == len(events) - 30  # both learned every click
    assert b.settings.knn_last == 3 and a.settings.knn_last == SETTINGS.knn_last
    report = arms.report()["arms"]
    assert report["a"]["users"] + report["b"]["users"] == len({r.user for r in lists})
    assert report["a"]["lists"] + report["b"]["lists"] == len(lists)


def test_a_click_is_credited_to_the_arm_whose_list_it_came_from_only() -> None:
    arms = Arms(SETTINGS, {"knn_last": 3}, share_b=0.5)
    lists = {r.user: r for r in arms.process(_events()).lists}  # each user's last list
    by_arm = {arm: next(r for r in lists.values() if r.arm == arm) for arm in ("a", "b")}
    for served in by_arm.values():
        item = served.items[0][0]
        click = Click(user=served.user, item=item, type="click", ts=1e4, rec_id=served.rec_id)
        arms.process([click])
    report = arms.report()["arms"]
    assert report["a"]["clicks_credited"] == report["b"]["clicks_credited"] == 1
    assert report["a"]["stale_clicks"] == report["b"]["stale_clicks"] == 0


def test_figures_kept_for_recent_users_only_give_the_same_intervals() -> None:
    rng = np.random.default_rng(3)
    everyone = ArmFigures("a", Split(0.0))
    recent = ArmFigures("a", Split(0.0), max_users=3)
    hits, positives = [], []
    for user in range(50):  # each user's events together: the bounded copy loses nothing
        n = int(rng.integers(1, 9))
        found = 0
        for _ in range(n):
            shown = tuple(rng.choice(20, 10, replace=False).tolist())
            item = int(rng.integers(20))
            found += item in shown
            for figures in (everyone, recent):
                figures.positive(str(user), item, shown)
        hits.append(found)
        positives.append(n)
    assert len(recent.per_user) == 3 and len(everyone.per_user) == 50
    full, bounded = everyone.report(), recent.report()
    assert bounded["users"] == 50
    assert bounded["hit_rate"] == pytest.approx(full["hit_rate"])
    assert bounded["hit_rate_ci95"] == pytest.approx(full["hit_rate_ci95"])
    value, interval = ratio_ci(hits, positives)  # the same as from every user's own sums
    assert full["hit_rate"] == pytest.approx(value)
    assert full["hit_rate_ci95"] == pytest.approx(interval)


def test_the_share_and_arm_b_settings_are_validated() -> None:
    with pytest.raises(ValueError, match="AB_SHARE"):
        Settings(ab_share=1.5)
    with pytest.raises(ValueError, match="unknown settings"):
        Settings(ab="no_such_setting=1")


def test_a_snapshot_holds_both_arms_at_the_same_offsets(tmp_path: Path) -> None:
    settings = dataclasses.replace(SETTINGS, ab="knn_last=3", state_dir=str(tmp_path))

    async def no_letters(key: bytes | None, value: bytes) -> None:
        raise AssertionError("no dead letter expected")

    sink = RedisSink.from_url("redis://127.0.0.1:1/0", "t:", 60, 10)  # never reached here
    work = Pipeline(settings, sink, no_letters)
    assert isinstance(work.host, LocalHost)
    arms = work.host.room.arms
    assert arms is not None
    events = _events()
    arms.process(events)
    work.offsets = {"clicks": {0: len(events)}}
    work.snapshot()
    engine_a, saved = snapshot.load_latest(settings.snapshot_path, settings) or (None, None)
    assert engine_a is not None and saved is not None
    arm_b = dataclasses.replace(settings, **settings.ab_changes())
    found = snapshot.load_matching(arm_b_path(settings), arm_b, saved.offsets)
    assert found is not None
    engine_b = found[0]
    np.testing.assert_array_equal(
        engine_b.model.ranker.table.latents, arms.engines["b"].model.ranker.table.latents
    )
    restored = Arms(settings, settings.ab_changes(), settings.ab_share, engine_a, engine_b)
    assert restored.report()["arms"] == arms.report()["arms"] | {
        arm: arms.report()["arms"][arm] | {"lists": 0} for arm in ("a", "b")
    }  # the figures came back with the engines (the lists count is the process's own)
    room = EngineRoom(settings)  # as a restarted worker's: both arms back, at those offsets
    assert room.restore() == saved and room.arms is not None
    np.testing.assert_array_equal(
        room.arms.engines["b"].model.ranker.table.latents, engine_b.model.ranker.table.latents
    )
    assert snapshot.load_matching(arm_b_path(settings), arm_b, {"clicks": {0: 1}}) is None
