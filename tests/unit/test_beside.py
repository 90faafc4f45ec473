"""Compiled learning beside the Python (``streamer.beside``): the same state, the errors kept."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from streamer import beside
from streamer.engine import Engine
from streamer.events import Click, ItemEvent
from streamer.settings import Settings

_RUN = beside.Beside._run


def _ratings(n: int, seed: int = 0) -> list[Click | ItemEvent]:
    """Ratings of 40 items by 60 users who agree on two taste groups, and a few clicks."""
    rng = np.random.default_rng(seed)
    out: list[Click | ItemEvent] = [
        ItemEvent(item=f"i{i}", ts=0.0, tags=[f"g{i % 2}"]) for i in range(40)
    ]
    for t in range(n):
        user, item = int(rng.integers(60)), int(rng.integers(40))
        value = 5.0 if user % 2 == item % 2 else 1.0 + float(rng.integers(2))
        kind = "click" if t % 7 == 0 else "rating"
        out.append(Click(user=f"u{user}", item=f"i{item}", type=kind, ts=float(t), value=value))
    return out


def _lists_and_predictions(spare_core: bool, monkeypatch: pytest.MonkeyPatch) -> tuple:
    monkeypatch.setattr(beside, "SPARE_CORE", spare_core)
    threads: set[str] = set()

    def spy(self: beside.Beside) -> None:
        threads.add(threading.current_thread().name)
        _RUN(self)

    monkeypatch.setattr(beside.Beside, "_run", spy)
    engine = Engine(Settings(n_factors=4, seed=3))
    predictions: list[float] = []

    class Ratings:
        def positive(self, user: str, item: int, shown: tuple[int, ...]) -> None: ...

        def rating(self, user: str, predicted: float, actual: float) -> None:
            predictions.append(predicted)

        def renumber(self, mapping: np.ndarray) -> None: ...

    engine.observers.append(Ratings())
    events = _ratings(3000)
    lists = []
    for n in range(0, len(events), 300):  # batches worth a thread
        out = engine.process(events[n : n + 300])
        lists += [(r.user, r.items, r.strategies) for r in out.lists]
    return lists, predictions, threads


def test_learning_beside_gives_what_learning_in_turn_gives(monkeypatch):
    in_turn = _lists_and_predictions(False, monkeypatch)
    side_by_side = _lists_and_predictions(True, monkeypatch)
    assert in_turn[2] == {threading.main_thread().name}
    assert "streamrec-beside" in side_by_side[2]  # the counts and the neighbourhood did
    assert len(in_turn[1]) > 2000 and len(in_turn[0]) > 100
    assert side_by_side[:2] == in_turn[:2]  # every list, score and prediction


def test_a_failed_block_still_waits_for_the_work_beside():
    done = []

    def slow() -> None:
        time.sleep(0.05)
        done.append(True)

    with pytest.raises(KeyError), beside.Beside(slow):
        raise KeyError("the block's own error")
    assert done == [True]  # nothing touches the shared state while it is still being learned


def test_small_work_runs_here_without_a_thread():
    names = []
    beside.Beside(lambda: names.append(threading.current_thread().name), worth=False).result()
    assert names == [threading.main_thread().name]
