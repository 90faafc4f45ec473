"""One wait loop: ask again until the answer is the one awaited, or the time is up."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def poll(
    probe: Callable[[], T],
    done: Callable[[T], object] = bool,
    timeout: float = 60.0,
    interval: float = 0.1,
) -> T:
    """``probe()`` every ``interval`` seconds until ``done(value)`` is true or ``timeout``
    seconds have passed; returns the last value either way (``done`` of it tells which).

    >>> values = iter(range(10))
    >>> poll(lambda: next(values), lambda v: v >= 3, timeout=5, interval=0)
    3
    >>> poll(lambda: 0, timeout=0.05, interval=0.01)  # never true: the last value, in time
    0
    """
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if done(value) or time.monotonic() >= deadline:
            return value
        time.sleep(interval)
