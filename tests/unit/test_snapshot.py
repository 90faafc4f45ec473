"""Snapshots: a restored engine goes on exactly as the uninterrupted one; bad files are refused."""

from __future__ import annotations

import dataclasses
import gc
from pathlib import Path

import numpy as np
import pytest

from streamer import snapshot
from streamer.engine import Engine
from streamer.evaluation.prequential import metrics_report, watched
from streamer.events import Click, ItemEvent
from streamer.recommender import Request
from streamer.settings import Settings
from streamer.state_codec import StateError, decode, encode


def _events(n: int, seed: int = 0) -> list[Click | ItemEvent]:
    """A small stream with a known shape: 60 items in 3 genres, 40 users who like one genre."""
    rng = np.random.default_rng(seed)
    out: list[Click | ItemEvent] = [
        ItemEvent(item=f"i{i}", ts=0.0, title=f"title {i}", tags=[f"g{i % 3}"]) for i in range(60)
    ]
    devices = ["tv", "phone"]
    for t in range(n):
        user = int(rng.integers(40))
        genre = user % 3
        item = int(rng.integers(20)) * 3 + genre if rng.random() < 0.8 else int(rng.integers(60))
        out.append(
            Click(
                user=f"u{user}",
                item=f"i{item}",
                type="rating",
                value=float(rng.integers(1, 6)),
                ts=float(t),
                context={"device": devices[t % 2]},
            )
        )
    return out


def _run(engine: Engine, events: list[Click | ItemEvent], batch: int = 50) -> list[object]:
    lists = []
    for n in range(0, len(events), batch):
        out = engine.process(events[n : n + batch], with_popular=n % 200 == 0)
        lists += [(r.user, r.items, r.strategies) for r in out.lists]
    return lists


SETTINGS = Settings(n_factors=6, top_k=5, candidates=10, new_item_events=100)


# and with users, or items, expiring across the snapshot; and with the neural strategy
@pytest.mark.parametrize(
    ("ttl", "item_ttl", "extra"),
    [(0.0, 0.0, ()), (150.0, 0.0, ()), (0.0, 120.0, ()), (0.0, 120.0, ("neural",))],
)
def test_a_restored_engine_goes_on_exactly_as_the_uninterrupted_one(
    tmp_path: Path, ttl: float, item_ttl: float, extra: tuple[str, ...]
) -> None:
    settings = dataclasses.replace(
        SETTINGS, user_ttl_s=ttl, item_ttl_s=item_ttl, strategies=SETTINGS.strategies + extra
    )
    events = _events(1200)
    half = 700  # a batch boundary
    whole = watched(Engine(settings))
    lists_whole = _run(whole, events)

    first = watched(Engine(settings))
    lists_first = _run(first, events[:half])
    saved = snapshot.save(first, {"clicks": {0: 123}}, tmp_path)
    restored, loaded = snapshot.load(saved.path, settings)
    lists_after = _run(restored, events[half:])

    assert loaded.offsets == {"clicks": {0: 123}} and loaded.events == first.events
    assert lists_first + lists_after == lists_whole  # every list, item, score and strategy
    for name in ("weights", "latents"):
        a = getattr(whole.model.ranker.table, name)
        b = getattr(restored.model.ranker.table, name)
        np.testing.assert_array_equal(a, b)
    query = {"device": "tv"}
    for user in ("u1", "u2", "u30"):
        for item in range(0, 60, 7):
            assert restored.score(user, query, item) == whole.score(user, query, item)
    assert metrics_report(restored) == metrics_report(whole)
    assert restored.expired_users == whole.expired_users and (ttl == 0) == (
        whole.expired_users == 0
    )
    assert restored.expired_items == whole.expired_items
    assert (item_ttl == 0) == (whole.expired_items == 0)
    later = [Request("u5", query, 0.0)]
    assert restored.recommender.recommend(later) == whole.recommender.recommend(later)


def test_a_password_never_lands_in_a_snapshot(tmp_path: Path) -> None:
    settings = dataclasses.replace(SETTINGS, kafka_username="me", kafka_password="s3cret-pw")
    saved = snapshot.save(Engine(settings), {}, tmp_path)
    assert b"s3cret-pw" not in saved.path.read_bytes()
    snapshot.load(saved.path, dataclasses.replace(settings, kafka_password="rotated"))


def test_the_newest_snapshots_are_kept(tmp_path: Path) -> None:
    engine = Engine(SETTINGS)
    _run(engine, _events(100))
    for _ in range(4):
        snapshot.save(engine, {}, tmp_path, keep=2)
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["snapshot-000000000003.npz", "snapshot-000000000004.npz"]


def test_a_corrupt_or_foreign_snapshot_is_refused_and_the_previous_one_loads(
    tmp_path: Path,
) -> None:
    engine = Engine(SETTINGS)
    _run(engine, _events(200))
    good = snapshot.save(engine, {"clicks": {0: 5}}, tmp_path)
    _run(engine, _events(100, seed=1))
    bad = snapshot.save(engine, {"clicks": {0: 9}}, tmp_path)
    raw = bytearray(bad.path.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    bad.path.write_bytes(bytes(raw))
    with pytest.raises(snapshot.SnapshotError, match=r"checksum|readable"):
        snapshot.load(bad.path, SETTINGS)
    other = dataclasses.replace(SETTINGS, n_factors=8)
    with pytest.raises(snapshot.SnapshotError, match=r"other settings \(n_factors\)"):
        snapshot.load(good.path, other)
    found = snapshot.load_latest(tmp_path, SETTINGS)
    assert found is not None and found[1].path == good.path and found[1].offsets["clicks"] == {0: 5}
    # operational settings may change between runs
    moved = dataclasses.replace(SETTINGS, redis_url="redis://elsewhere:6379/1", partitions=8)
    assert snapshot.load(good.path, moved)[1].events == good.events


def test_the_codec_refuses_what_it_must_not_write_or_read() -> None:
    with pytest.raises(StateError, match="cannot be snapshotted"):
        encode({"f": open})
    with pytest.raises(StateError, match="not one a snapshot may hold"):
        decode({"$obj": "subprocess:Popen", "id": 0, "state": []}, {})
    with pytest.raises(StateError, match="cannot be snapshotted"):
        encode(np.array([object()]))


def test_small_arrays_share_a_pool_per_dtype_and_come_back_as_they_were() -> None:
    rng = np.random.default_rng(3)
    small = [rng.integers(0, 100, size=int(n)) for n in rng.integers(0, 50, size=2000)]
    state = {
        "small": small,
        "again": small[7],  # shared: the same object after decoding
        "shapes": [np.zeros(()), np.ones((3, 4), np.float32), np.arange(6, dtype=np.int8)[::2]],
        "large": np.arange(10_000, dtype=np.float64),
    }
    doc, arrays = encode(state)
    # the large array alone; the small ones in one pool per dtype (int64, float64, float32, int8)
    assert sorted(arrays) == ["a0", "pool0", "pool1", "pool2", "pool3"]
    assert sum(a.size for a in arrays.values()) == 10_000 + sum(a.size for a in small) + 1 + 12 + 3
    back = decode(doc, arrays)
    assert all(
        np.array_equal(a, b) and a.dtype == b.dtype
        for a, b in zip(small, back["small"], strict=True)
    )
    assert back["again"] is back["small"][7]
    for a, b in zip(state["shapes"], back["shapes"], strict=True):
        assert a.shape == b.shape and a.dtype == b.dtype and np.array_equal(a, b)
    np.testing.assert_array_equal(back["large"], state["large"])
    assert not any(
        np.shares_memory(a, b) for a, b in zip(back["small"][:-1], back["small"][1:], strict=True)
    )
    with pytest.raises(StateError, match="past the end"):
        decode({"$array": "pool0", "at": 10**9, "shape": [2], "id": 0}, arrays)


def test_the_codec_walks_with_the_cyclic_collector_paused_and_gives_it_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A snapshot's graph is millions of objects at scale: the collector would walk them again
    and again as they are made (half of a write and of a load with 50,000 users,
    docs/reliability.md). It is off while the codec runs, and back after, an error or not."""
    seen: list[bool] = []

    def watching(function):
        def wrapped(*args, **kwargs):
            seen.append(gc.isenabled())
            return function(*args, **kwargs)

        return wrapped

    monkeypatch.setattr(snapshot, "encode", watching(encode))
    monkeypatch.setattr(snapshot, "decode", watching(decode))
    engine = Engine(SETTINGS)
    _run(engine, _events(50))
    saved = snapshot.save(engine, {}, tmp_path)
    snapshot.load(saved.path, SETTINGS)
    assert seen == [False, False] and gc.isenabled()

    def failing(*args, **kwargs):
        raise StateError("cannot be written")

    monkeypatch.setattr(snapshot, "encode", failing)
    with pytest.raises(StateError):
        snapshot.save(engine, {}, tmp_path)
    assert gc.isenabled()
    gc.disable()  # a caller that had it off keeps it off
    try:
        snapshot.load(saved.path, SETTINGS)
        assert not gc.isenabled()
    finally:
        gc.enable()
