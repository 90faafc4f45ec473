"""One way to compile a function (numba), for every compiled kernel of the project."""

from __future__ import annotations

import functools
import hashlib
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numba

#: What marks a module of compiled kernels (its source is part of every kernel's cache stamp).
KERNEL_MARK = b"from streamer.jit import compiled"


def compiled(function: Callable[..., Any] | None = None, *, nogil: bool = False) -> Any:
    """``numba.njit``, its machine code cached on disk (next to the function's file, else in
    ``NUMBA_CACHE_DIR`` or the user's cache directory); where none is writable (a read-only
    install run by a user without a home), compiled anew in each process instead of failing.

    numba's cache is stale when only a module the kernel calls into changed (``rowpool``'s
    helpers, inlined into the kernels that call them: a pull that changed only that module
    ran the old machine code); so a kernel's cache also depends on the source of every kernel
    module of its package (:func:`kernel_sources`): an edit to one compiles them all again.

    ``@compiled(nogil=True)``: the machine code releases the GIL, for a kernel that runs in a
    thread while the worker's Python goes on (``streamer.beside``). The others keep it: a
    kernel that let it go in the worker's own thread would wait to get it back from Faust's
    consumer thread (up to Python's switch interval, 5 ms) at every call.
    """
    if function is None:
        return lambda f: compiled(f, nogil=nogil)
    try:
        kernel = numba.njit(cache=True, nogil=nogil)(function)
    except RuntimeError:  # numba: "cannot cache function ...: no locator available"
        return numba.njit(nogil=nogil)(function)
    package = sys.modules.get(function.__module__.partition(".")[0])
    paths = getattr(package, "__path__", None)
    if paths:  # numba's own stamp (the function's file) and its package's kernel modules
        # (numba's internals, checked by tests/unit/test_jit.py)
        index = kernel._cache._cache_file  # type: ignore[attr-defined]
        index._source_stamp = (index._source_stamp, kernel_sources(Path(next(iter(paths)))))
    return kernel


@functools.cache
def kernel_sources(root: Path) -> str:
    """A digest of the source of every module of compiled kernels under ``root``."""
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*.py")):
        text = path.read_bytes()
        if KERNEL_MARK in text:
            digest.update(path.relative_to(root).as_posix().encode() + b"\0" + text)
    return digest.hexdigest()
