"""Where the engine lives: in the worker's process, or in a process of its own beside it.

A worker's event loop runs Faust (its consumer, its streams, ~90 µs of Python per message
here) and the pipeline; the engine's booking of each event is Python too. In one process they
take turns for one interpreter lock, so the worker's rate is bounded by their sum on one core
while the machine's second core idles (docs/benchmarks.md, sessions 20-21). With the engine in
a process of its own (``STREAMREC_ENGINE_PROCESS``, on by default for a worker), Faust reads the
next batch while the engine learns the last one: the two sums overlap.

Both hosts answer the same two calls on an :class:`~streamer.room.EngineRoom` method and its
arguments: :meth:`~LocalHost.ask` (an answer now: the loop waits) and :meth:`~LocalHost.call`
(awaited: in a process of its own, the loop goes on meanwhile). Arguments and answers are
plain data, pickled across the socket.

>>> from streamer.settings import Settings
>>> host = LocalHost(EngineRoom(Settings(n_factors=4)))
>>> host.ask(EngineRoom.status).interactions
0
"""

from __future__ import annotations

import asyncio
import atexit
import logging
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Any, Concatenate, ParamSpec, TypeVar

from streamer.room import EngineRoom
from streamer.settings import Settings

log = logging.getLogger(__name__)

P = ParamSpec("P")
R = TypeVar("R")
#: Seconds a stopping worker waits for its engine's process to end before ending it.
CLOSE_S = 10.0


class EngineGone(RuntimeError):
    """The engine's process ended (killed, out of memory, a crash): the worker cannot go on
    without its state; it exits, and a restart resumes from the last snapshot."""


class LocalHost:
    """The engine in the worker's own process: every call is a method call."""

    def __init__(self, room: EngineRoom) -> None:
        self.room = room

    def ask(
        self, method: Callable[Concatenate[EngineRoom, P], R], *args: P.args, **kwargs: P.kwargs
    ) -> R:
        """``method(room, *args)``, now."""
        return method(self.room, *args, **kwargs)

    async def call(
        self, method: Callable[Concatenate[EngineRoom, P], R], *args: P.args, **kwargs: P.kwargs
    ) -> R:
        """:meth:`ask`, with no await inside: the loop runs nothing else meanwhile."""
        return method(self.room, *args, **kwargs)

    def close(self) -> None:
        """Nothing to end."""


class ProcessHost:
    """The engine in a process of its own (``python -m streamer.hosts``: a new interpreter,
    nothing of the worker's threads, locks or main module inherited), served one call at a time
    over a socket pair.

    Calls come from one thread, the event loop's: an awaited :meth:`call` is answered when
    the socket is readable (a reader on the loop, no thread: a thread waiting for the loop's
    interpreter lock would add up to its 5 ms switch interval to every batch), and an
    :meth:`ask` meanwhile first reads the answer of the call in progress.

    The process ignores SIGINT and SIGTERM (the worker stops it, after its final snapshot)
    and ends when the socket closes: when the worker ends, however it ends (kill -9 too)."""

    def __init__(self, settings: Settings) -> None:
        ours, theirs = socket.socketpair()
        with ours, theirs:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "streamer.hosts", str(theirs.fileno())],
                pass_fds=[theirs.fileno()],
                stdin=subprocess.DEVNULL,
            )
            self._conn = Connection(ours.detach())
        self._turn = asyncio.Lock()  # one awaited call at a time
        #: the answer the awaited call in progress waits for, and its loop
        self._waiting: tuple[asyncio.Future[Any], asyncio.AbstractEventLoop] | None = None
        level = logging.getLogger("streamer").getEffectiveLevel()  # (run_worker sets it)
        self._send(((settings, level), (), {}))
        atexit.register(self.close)  # (a process that is not closed would outlive its worker)

    def ask(
        self, method: Callable[Concatenate[EngineRoom, P], R], *args: P.args, **kwargs: P.kwargs
    ) -> R:
        """``method(room, *args)`` in the engine's process; waits for its answer (after that
        of the call in progress, if any)."""
        self._settle()
        self._send((method.__name__, args, kwargs))
        return self._answer()

    async def call(
        self, method: Callable[Concatenate[EngineRoom, P], R], *args: P.args, **kwargs: P.kwargs
    ) -> R:
        """:meth:`ask`, awaited: the loop (Faust reading the next batch) goes on meanwhile."""
        async with self._turn:
            loop = asyncio.get_running_loop()
            self._send((method.__name__, args, kwargs))
            answer: asyncio.Future[R] = loop.create_future()
            self._waiting = answer, loop
            loop.add_reader(self._conn.fileno(), self._settle)
            return await answer

    def _settle(self) -> None:
        """Read the answer of the call in progress, if any, into its future."""
        if self._waiting is None:
            return
        answer, loop = self._waiting
        self._waiting = None
        loop.remove_reader(self._conn.fileno())
        try:
            value = self._answer()
        except Exception as exc:
            if not answer.done():
                answer.set_exception(exc)
            return
        if not answer.done():  # (not cancelled meanwhile)
            answer.set_result(value)

    def _send(self, request: tuple[Any, tuple[Any, ...], dict[str, Any]]) -> None:
        try:
            self._conn.send(request)
        except (EOFError, OSError) as exc:
            raise self._gone() from exc

    def _answer(self) -> Any:
        try:
            ok, answer = self._conn.recv()
        except (EOFError, OSError) as exc:
            raise self._gone() from exc
        if not ok:
            raise answer
        return answer

    def ended(self) -> EngineGone | None:
        """The error of the engine's process having ended, None while it runs."""
        code = self.process.poll()
        return None if code is None else _ended(code)

    def _gone(self) -> EngineGone:
        """The socket failed: the process's end (waited for a moment), as an error."""
        try:
            return _ended(self.process.wait(1.0))
        except subprocess.TimeoutExpired:
            return _ended(None)

    def close(self) -> None:
        """End the engine's process (its state is in the last snapshot): the socket closed, it
        ends after the call in progress; killed if it has not within ``CLOSE_S``."""
        if self._waiting is not None:
            answer, loop = self._waiting
            self._waiting = None
            if not loop.is_closed():
                loop.remove_reader(self._conn.fileno())
            answer.cancel()
        self._conn.close()
        try:
            self.process.wait(CLOSE_S)
        except subprocess.TimeoutExpired:
            self.process.kill()  # (it ignores SIGTERM)
            self.process.wait()
        atexit.unregister(self.close)


def _ended(code: int | None) -> EngineGone:
    return EngineGone(f"the engine's process ended (exit code {code})")


def serve(conn: Connection) -> None:
    """The engine's process: the settings and log level first, then an
    :class:`EngineRoom` answering calls until the socket closes."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    (settings, level), _, _ = conn.recv()
    logging.basicConfig(
        level=level, format="[%(asctime)s] [engine %(process)d] %(levelname)s %(name)s: %(message)s"
    )
    # a snapshot's forked copy (streamer.forked) leaves the socket to this process: the
    # worker sees its end when this process ends, not when the copy does
    os.register_at_fork(after_in_child=conn.close)
    room = EngineRoom(settings)
    while True:
        try:
            name, args, kwargs = conn.recv()
        except (EOFError, OSError):  # the worker ended
            return
        try:
            reply: tuple[bool, Any] = (True, getattr(EngineRoom, name)(room, *args, **kwargs))
        except Exception as exc:
            reply = (False, exc)
        try:
            conn.send(reply)
        except (EOFError, OSError):
            return
        except Exception as exc:  # an answer or an error that does not pickle
            conn.send((False, RuntimeError(f"{name}: {type(exc).__name__}: {exc}")))


def make_host(settings: Settings) -> LocalHost | ProcessHost:
    """The engine's host for a worker with ``settings``: a process of its own with
    ``engine_process``, except with several workers sharing one model (``streamer.sharing``
    reads and writes the engine between batches, in the worker's process)."""
    if settings.engine_process and settings.sync_interval_s <= 0:
        return ProcessHost(settings)
    if settings.engine_process:
        log.info("sharing between workers: the engine runs in the worker's process")
    return LocalHost(EngineRoom(settings))


Host = LocalHost | ProcessHost

if __name__ == "__main__":
    serve(Connection(int(sys.argv[1])))
