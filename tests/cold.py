"""A fresh interpreter with only the handlers' import paths, as Lambda starts one: the cold-start
tests run a handler module (or a script importing it) there and read what it printed."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HANDLER_PATHS = [ROOT / "layers" / "common" / "python", ROOT / "functions"]


def run_fresh(args: list[str], stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    """`python *args` in a fresh interpreter that sees the layer and the handlers; fails the test
    when it does not exit cleanly."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(str(p) for p in HANDLER_PATHS)}
    done = subprocess.run(
        [sys.executable, *args], input=stdin, capture_output=True, text=True, env=env, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return done
