"""The engine's hosts: a process of its own answers every call as the worker's own would."""

import asyncio
import json
import random
from pathlib import Path

import pytest

from streamer import snapshot
from streamer.hosts import EngineGone, LocalHost, ProcessHost, make_host
from streamer.room import EngineRoom
from streamer.settings import Settings


def _batches() -> list[tuple[str, list[bytes]]]:
    """Items, then clicks and contexts of a few users, with values that are not events."""
    rng = random.Random(5)
    items = [
        json.dumps({"item": f"i{n}", "tags": [f"t{n % 4}"], "title": f"item {n}"}).encode()
        for n in range(30)
    ]
    batches = [("items", items)]
    for b in range(6):
        clicks = [
            json.dumps({
                "user": f"u{rng.randrange(12)}",
                "item": f"i{min(rng.randrange(30), rng.randrange(30))}",
                "type": rng.choice(["click", "view", "purchase", "skip"]),
                "ts": 1000.0 + 40 * b + n,
                "context": {"device": rng.choice(["tv", "phone"])},
            }).encode()
            for n in range(40)
        ]  # fmt: skip
        clicks[7] = b"\xff not json"
        clicks[19] = json.dumps({"user": "u1"}).encode()  # no item
        batches.append(("clicks", clicks))
        context = {"user": f"u{b}", "ts": 1000.0 + 40 * b, "context": {"device": "tv"}}
        batches.append(("contexts", [json.dumps(context).encode()]))
    return batches


def test_the_engine_in_a_process_of_its_own_answers_as_the_workers_own(tmp_path: Path) -> None:
    settings = Settings(n_factors=4, top_k=5, state_dir=str(tmp_path))
    here, apart = LocalHost(EngineRoom(settings)), ProcessHost(settings)
    try:
        learned, refused = 0, []
        for kind, values in _batches():
            mine = here.ask(EngineRoom.process, kind, values, True, True)
            theirs = asyncio.run(apart.call(EngineRoom.process, kind, values, True, True))
            assert theirs.rejected == mine.rejected and theirs.users == mine.users
            assert theirs.out.lists == mine.out.lists  # every item, score, strategy, rec_id
            assert theirs.out.popular == mine.out.popular
            assert theirs.out.similar == mine.out.similar
            assert theirs.status == mine.status
            learned += len(values)
            refused += [(kind, position) for position, _ in mine.rejected]
        assert refused == [("clicks", 7), ("clicks", 19)] * 6
        assert mine.status.interactions > 100 and mine.out.lists
        assert apart.ask(EngineRoom.metrics) == here.ask(EngineRoom.metrics)
        assert apart.ask(EngineRoom.user_state, "u3") == here.ask(EngineRoom.user_state, "u3")
        assert apart.ask(EngineRoom.item_state, "i2") == here.ask(EngineRoom.item_state, "i2")
        # its snapshot is the engine it holds: loaded here, it is the same engine
        saved = apart.ask(EngineRoom.snapshot, {"clicks": {0: learned}}, {})
        room = EngineRoom(settings)
        assert room.restore() == saved
        assert room.status() == here.ask(EngineRoom.status)
        assert room.metrics() == here.ask(EngineRoom.metrics)
    finally:
        apart.close()
    assert apart.process.poll() == 0  # it ended by itself once the socket closed


def test_an_error_in_the_engines_process_comes_back_as_itself(tmp_path: Path) -> None:
    apart = ProcessHost(Settings(n_factors=4, state_dir=str(tmp_path)))
    try:
        with pytest.raises(KeyError, match="no-such-topic"):
            apart.ask(EngineRoom.process, "no-such-topic", [b"{}"])
        assert apart.ask(EngineRoom.status).interactions == 0  # and it goes on
    finally:
        apart.close()


def test_a_worker_whose_engine_process_ended_is_told_so(tmp_path: Path) -> None:
    apart = ProcessHost(Settings(n_factors=4, state_dir=str(tmp_path)))
    assert apart.ended() is None
    apart.process.kill()
    apart.process.wait()
    assert str(apart.ended()) == "the engine's process ended (exit code -9)"
    with pytest.raises(EngineGone, match="exit code -9"):
        apart.ask(EngineRoom.status)
    apart.close()


def test_the_engine_has_a_process_of_its_own_unless_workers_share_it() -> None:
    alone = make_host(Settings(n_factors=4))
    try:
        assert isinstance(alone, ProcessHost)
    finally:
        alone.close()
    assert isinstance(make_host(Settings(n_factors=4, engine_process=False)), LocalHost)
    assert isinstance(make_host(Settings(n_factors=4, sync_interval_s=1.0)), LocalHost)


def test_a_snapshot_written_apart_is_the_engine_at_its_fork_while_it_learns_on(
    tmp_path: Path,
) -> None:
    settings = Settings(n_factors=4, top_k=5, state_dir=str(tmp_path))
    here, apart = LocalHost(EngineRoom(settings)), ProcessHost(settings)
    batches = _batches()
    try:
        for kind, values in batches[:5]:
            here.ask(EngineRoom.process, kind, values)
            apart.ask(EngineRoom.process, kind, values)
        at_fork = here.ask(EngineRoom.status), here.ask(EngineRoom.metrics)
        begun, told = apart.ask(EngineRoom.snapshot_apart, {"clicks": {0: 5}}, {})
        assert begun is not None and told is None
        written = []
        for kind, values in batches[5:]:  # the engine learns on meanwhile, unchanged by it
            mine = here.ask(EngineRoom.process, kind, values)
            theirs = apart.ask(EngineRoom.process, kind, values)
            assert theirs.out.lists == mine.out.lists and theirs.status == mine.status
            written += [theirs.written] if theirs.written else []
        if not written:  # still writing: a snapshot here and now waits for it, then tells it
            apart.ask(EngineRoom.snapshot, {"clicks": {0: 9}}, {})
            written.append(apart.ask(EngineRoom.process, "contexts", []).written)
        assert len(written) == 1 and written[0].ok
        engine, saved = snapshot.load(begun.path, settings)
        assert saved.offsets == {"clicks": {0: 5}} and saved.events == begun.events
        room = EngineRoom(settings, engine)
        assert (room.status(), room.metrics()) == at_fork  # what it held at the fork
        assert room.status() != here.ask(EngineRoom.status)  # not what it learned after
    finally:
        apart.close()
    assert apart.process.poll() == 0
