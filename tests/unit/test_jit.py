"""The compiled kernels' on-disk cache follows the sources it was compiled from."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import streamer
from streamer import rowpool
from streamer.jit import kernel_sources

ROOT = Path(streamer.__file__).parent


def _run(path: Path) -> str:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(path), str(ROOT.parent)])}
    code = "from kernels.caller import twice; print(twice(1))"
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_a_kernel_is_compiled_again_when_a_kernel_module_it_calls_into_changes(tmp_path):
    """numba alone keys a cache by the kernel's own file: an edit to a helper it inlines
    (``rowpool``'s, say) left the old machine code running."""
    package = tmp_path / "kernels"
    package.mkdir()
    (package / "__init__.py").write_text("")
    helper = "from streamer.jit import compiled\n\n\n@compiled\ndef step(x):\n    return x + {}\n"
    (package / "helper.py").write_text(helper.format(1))
    (package / "caller.py").write_text(
        "from streamer.jit import compiled\nfrom kernels.helper import step\n\n\n"
        "@compiled\ndef twice(x):\n    return step(step(x))\n"
    )
    assert _run(tmp_path) == "3"
    assert list((package / "__pycache__").glob("caller.twice-*.nbi"))  # cached
    (package / "helper.py").write_text(helper.format(10))
    assert _run(tmp_path) == "21"


def test_the_stamp_covers_the_projects_kernel_modules():
    stamp = rowpool.locate._cache._cache_file._source_stamp
    assert stamp[1] == kernel_sources(ROOT)
    assert kernel_sources(ROOT) != kernel_sources(ROOT / "model")  # a digest of the files read
