"""The README documents every setting, and the scripts it names run."""

import dataclasses
import subprocess
import sys
from pathlib import Path

from streamer.settings import Settings

ROOT = Path(__file__).resolve().parents[2]


def test_every_setting_is_in_the_readme():
    readme = (ROOT / "README.md").read_text()
    missing = []
    for field in dataclasses.fields(Settings):
        name = f"STREAMREC_{field.name.upper()}"
        if name not in readme and not (name.endswith("_MAX") and "_MIN` / `_MAX" in readme):
            missing.append(name)
    assert not missing


def test_scripts_run():
    for script in ("replay.py", "stack.py"):
        done = subprocess.run(
            [sys.executable, str(ROOT / "scripts" / script), "--help"],
            capture_output=True,
            text=True,
            check=False,
        )
        assert done.returncode == 0 and "usage" in done.stdout
