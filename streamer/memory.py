"""The heap around a snapshot: the cyclic collector paused while one is built or read, and
the free memory given back to the system after it.

Writing or reading a snapshot makes millions of objects that the cyclic garbage collector
would walk again and again as they are made (a young generation is collected every 700 new
containers, and each survivor is walked again in the older ones): with 50,000 users kept,
half of a snapshot's write (the stream's pause) and of its load (a restart) went to that.
:func:`collector_paused` leaves them to reference counting while the graph is walked.

A snapshot builds and drops tens of MB of buffers; glibc's allocator keeps what was freed in
its arenas, so the worker's RSS rose 10-15 MB with each snapshot and fell only as later
allocations reused it (docs/reliability.md, session 12): noise on the soak's RSS curve and, to a
supervisor's memory limit, memory in use. ``malloc_trim`` returns the free pages.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import functools
import gc
from collections.abc import Iterator
from typing import Any


@contextlib.contextmanager
def collector_paused() -> Iterator[None]:
    """The cyclic garbage collector off within the block, back as it was after (even on an
    error). Reference counting still frees what the block drops; cycles made meanwhile wait
    for the next collection.

    >>> with collector_paused():
    ...     gc.isenabled()
    False
    >>> gc.isenabled()
    True
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


@functools.cache
def _libc() -> Any:
    """glibc, or None where there is none (macOS, musl without ``malloc_trim``)."""
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name)
        libc.malloc_trim.argtypes = [ctypes.c_size_t]
        return libc
    except (OSError, AttributeError, TypeError):
        return None


def release_free_memory() -> bool:
    """Return free heap pages to the system (glibc's ``malloc_trim(0)``); False where the C
    library cannot (it is not glibc).

    >>> import platform
    >>> release_free_memory() == (platform.libc_ver()[0] == "glibc")
    True
    """
    libc = _libc()
    if libc is None:
        return False
    libc.malloc_trim(0)
    return True
