"""Compiled work on another core while Python goes on.

A compiled kernel that releases the GIL (``streamer.jit.compiled(nogil=True)``) can update one
structure in a thread while the worker's Python updates another: item-kNN's co-occurrence
counts learn a batch while the model learns it, the rating neighbourhood while the
factorization machines do. Each structure is updated in the same order as before, so the
results are the same; only the wall time falls, where the machine has a core to spare.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from types import TracebackType
from typing import Generic, TypeVar

T = TypeVar("T")


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))  # the cores this process may use (a container's)
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


#: The fewest events worth a thread: below, starting one costs more than it saves.
BESIDE_MIN = 100

#: Whether this process may run on more than one core (else work beside is run at once).
SPARE_CORE = _cores() > 1


class Beside(Generic[T]):
    """``function()`` started in a thread now, when ``worth`` it (enough work to pay for a
    thread, ~0.1 ms) and a core is free for it; else run at once, here. :meth:`result` (or the
    end of a ``with`` block) waits for it and returns its value, or raises its error.

    Whatever ``function`` touches must be left alone by the caller until then.

    Examples
    --------
    >>> with Beside(lambda: sum(range(10))) as total:
    ...     other = sum(range(5))  # meanwhile
    >>> total.result(), other
    (45, 10)
    >>> Beside(lambda: 1 // 0).result()
    Traceback (most recent call last):
    ...
    ZeroDivisionError: integer division or modulo by zero
    """

    def __init__(self, function: Callable[[], T], worth: bool = True) -> None:
        self._function = function
        self._value: T | None = None
        self._error: BaseException | None = None
        self._thread: threading.Thread | None = None
        if worth and SPARE_CORE:
            self._thread = threading.Thread(target=self._run, name="streamrec-beside")
            self._thread.start()
        else:
            self._run()

    def _run(self) -> None:
        try:
            self._value = self._function()
        except BaseException as exc:  # handed to the caller at result()
            self._error = exc

    def result(self) -> T:
        self._join()
        if self._error is not None:
            error, self._error = self._error, None
            raise error
        return self._value  # type: ignore[return-value]

    def __enter__(self) -> Beside[T]:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if kind is None:
            self.result()
        else:  # the block failed: still wait (the work is on shared state); its own error
            self._join()  # yields to the block's

    def _join(self) -> None:
        if self._thread is not None:
            self._thread.join()
            self._thread = None
