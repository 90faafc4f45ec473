"""Writes in a forked copy: the state at the fork, one at a time, failures told."""

import os
from pathlib import Path

from streamer.forked import Forked


def test_the_copy_writes_the_state_at_its_fork_and_one_write_runs_at_a_time(
    tmp_path: Path,
) -> None:
    go, let_go = os.pipe()
    state = {"n": 1}
    out = tmp_path / "out"

    def write() -> None:
        os.read(go, 1)  # held until the parent has changed its state and asked again
        out.write_text(str(state["n"]))

    writer = Forked()
    assert writer.begin(write)
    state["n"] = 2  # the parent goes on after the fork
    assert writer.busy and writer.done() is None  # still writing: nothing told
    assert not writer.begin(lambda: out.write_text("second"))  # one at a time
    os.write(let_go, b"x")
    done = writer.done(wait=True)
    assert done is not None and done.ok and done.seconds > 0
    assert out.read_text() == "1"  # the copy's state is the one at the fork
    assert not writer.busy and writer.done() is None  # told once
    assert writer.begin(lambda: out.write_text("second"))  # free again
    second = writer.done(wait=True)
    assert second is not None and second.ok and out.read_text() == "second"


def test_a_failed_write_is_told_as_such(tmp_path: Path) -> None:
    writer = Forked()
    assert writer.begin(lambda: (tmp_path / "no-such-dir" / "x").write_text("x"))
    done = writer.done(wait=True)
    assert done is not None and not done.ok
