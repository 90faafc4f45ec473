"""One way to compile a function (numba), for every compiled kernel of the project."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numba


def compiled(function: Callable[..., Any]) -> Any:
    """``numba.njit``, its machine code cached on disk (next to the function's file, else in
    ``NUMBA_CACHE_DIR`` or the user's cache directory); where none is writable (a read-only
    install run by a user without a home), compiled anew in each process instead of failing.
    The machine code releases the GIL: a kernel may run in a thread while the worker's Python
    goes on (``streamer.beside``)."""
    try:
        return numba.njit(cache=True, nogil=True)(function)
    except RuntimeError:  # numba: "cannot cache function ...: no locator available"
        return numba.njit(nogil=True)(function)
