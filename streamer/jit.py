"""One way to compile a function (numba), for every compiled kernel of the project."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numba


def compiled(function: Callable[..., Any] | None = None, *, nogil: bool = False) -> Any:
    """``numba.njit``, its machine code cached on disk (next to the function's file, else in
    ``NUMBA_CACHE_DIR`` or the user's cache directory); where none is writable (a read-only
    install run by a user without a home), compiled anew in each process instead of failing.

    ``@compiled(nogil=True)``: the machine code releases the GIL, for a kernel that runs in a
    thread while the worker's Python goes on (``streamer.beside``). The others keep it: a
    kernel that let it go in the worker's own thread would wait to get it back from Faust's
    consumer thread (up to Python's switch interval, 5 ms) at every call.
    """
    if function is None:
        return lambda f: compiled(f, nogil=nogil)
    try:
        return numba.njit(cache=True, nogil=nogil)(function)
    except RuntimeError:  # numba: "cannot cache function ...: no locator available"
        return numba.njit(nogil=nogil)(function)
