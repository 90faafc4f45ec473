"""Give the process's free heap memory back to the system after a burst of temporaries.

A snapshot builds and drops tens of MB of buffers; glibc's allocator keeps what was freed in
its arenas, so the worker's RSS rose 10-15 MB with each snapshot and fell only as later
allocations reused it (docs/reliability.md, session 12): noise on the soak's RSS curve and, to a
supervisor's memory limit, memory in use. ``malloc_trim`` returns the free pages.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
from typing import Any


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
