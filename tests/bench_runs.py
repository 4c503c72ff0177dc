"""Running a bench/ script as its own process group, as `make bench` would, for the smoke tests:
whatever it starts (worker interpreters, the local runtime) is stopped even when the test fails."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def stop_process_group(process: subprocess.Popen[str]) -> None:
    # Everything the script started is in the process group of the session it leads, so signalling
    # the group reaches whatever is left.
    for sig, wait in ((signal.SIGTERM, 15), (signal.SIGKILL, 10)):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, sig)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(wait)


def run_bench(script: str, *args: str, timeout: float) -> tuple[int, str]:
    """bench/`script` with `args`: its exit status and its output (stdout and stderr); the test
    fails if it is still running after `timeout` seconds."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(str(ROOT / p) for p in ("layers/common/python", "functions", "tools"))
    process = subprocess.Popen(
        [sys.executable, str(ROOT / "bench" / script), *args],
        cwd=ROOT,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        try:
            output, _ = process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            stop_process_group(process)
            output, _ = process.communicate(timeout=10)
            pytest.fail(f"bench/{script} still running after {timeout} s; output:\n{output}")
    finally:
        stop_process_group(process)
    return process.returncode, output
