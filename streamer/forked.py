"""Snapshots written beside the stream, by a fork of the engine's process.

A snapshot of a worker that learned MovieLens-100K is ~130 MB and takes ~0.3 s to encode and
write on an idle core; meanwhile the engine learns nothing and the lists wait (at 1,000
events/s, every list of those 0.3 s late: the benchmark's freshness p99 went from ~40 to
~180 ms when a snapshot fell in its window). As Redis's ``BGSAVE``, the engine's process
forks: the copy, frozen at the moment of the fork (between two batches, with the offsets of
the last), encodes and writes the snapshot and exits, while the engine goes on learning. The
stream waits only for the fork (a few ms: page tables).

What it costs: memory. The copy shares the engine's pages until either side writes one; the
engine writes those of what it learns, the copy's walk of the state writes reference counts,
so up to the state's size more for the write's duration (docs/reliability.md).

What must not be done in the copy: anything that takes a lock another thread of the engine's
process may hold at the fork, or that starts threads (FAISS's OpenMP). The index's vectors are
therefore read before the fork (:func:`streamer.snapshot.save`'s ``items``); the copy only
encodes Python objects and numpy arrays and writes files.

Examples
--------
>>> import tempfile
>>> from pathlib import Path
>>> out = Path(tempfile.mkdtemp()) / "x"
>>> writer = Forked()
>>> writer.begin(lambda: out.write_text("written"))
True
>>> done = writer.done(wait=True)
>>> done.ok, out.read_text(), writer.busy
(True, 'written', False)
>>> writer.begin(lambda: 1 / 0)  # a failure is the copy's exit code (its traceback logged)
True
>>> writer.done(wait=True).ok
False
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Written:
    """How a write in a forked copy ended."""

    ok: bool  # exit code 0
    seconds: float  # from the fork to the copy's end, as seen by the parent


class Forked:
    """One write at a time in a forked copy of this process."""

    def __init__(self) -> None:
        self._pid: int | None = None
        self._began = 0.0

    @property
    def busy(self) -> bool:
        """A copy is writing, or has ended and is not reaped yet (:meth:`done`)."""
        return self._pid is not None

    def begin(self, write: Callable[[], object]) -> bool:
        """Fork; the copy runs ``write()`` and exits (0 when it returned). False, and nothing
        done, while an earlier copy is busy."""
        if self._pid is not None:
            return False
        pid = os.fork()
        if pid == 0:  # the copy: never back into the caller's loop
            code = 1
            try:
                write()
                code = 0
            except BaseException:
                log.exception("a write apart failed")
            finally:
                logging.shutdown()
                os._exit(code)
        self._pid, self._began = pid, time.perf_counter()
        return True

    def done(self, wait: bool = False) -> Written | None:
        """How the last copy ended, once (None while it runs, unless ``wait``; None when no
        copy was begun since)."""
        if self._pid is None:
            return None
        pid, status = os.waitpid(self._pid, 0 if wait else os.WNOHANG)
        if pid == 0:
            return None
        self._pid = None
        return Written(os.waitstatus_to_exitcode(status) == 0, time.perf_counter() - self._began)
