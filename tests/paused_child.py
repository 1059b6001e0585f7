"""A CLI child process stopped for good at a known point, for kill -9 tests.

The command under test sleeps forever once it logs "pausing" (each command's own pause hook,
set through an environment variable), so a test kills it at that point: no race with a run that
finishes first, and no skip.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def start_paused(
    argv: list[str], env: dict[str, str], log: Path, timeout_s: float = 180
) -> subprocess.Popen:
    """``python -m neuron_signatures *argv`` with ``env`` added, returned once it paused (its
    stderr goes to ``log``); fails the test if it exits or does not pause in ``timeout_s``."""
    full_env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT), **env}
    with open(log, "wb") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "neuron_signatures", *argv],
            env=full_env,
            stdout=subprocess.DEVNULL,
            stderr=err,
        )
    deadline = time.monotonic() + timeout_s
    while "pausing" not in log.read_text():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"the child never paused: {log.read_text()}")
        time.sleep(0.02)
    return proc
