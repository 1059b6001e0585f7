"""neuron_signatures.malloc: glibc keeps freed memory in a process the command owns."""

from __future__ import annotations

import subprocess
import sys

import pytest

CODE = """
import resource, sys
import numpy as np
from neuron_signatures.malloc import keep_freed_memory
kept = keep_freed_memory() if sys.argv[1] == "on" else False
faults = []
for _ in range(6):  # a batch's activations held, then freed, as an atlas does
    f0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    held = [np.ones(1 << 20) for _ in range(12)]  # 12 x 8 MiB
    del held
    faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f0)
print(kept, sum(faults[1:]))
"""


def _run(mode: str, env: dict[str, str] | None = None) -> tuple[str, int]:
    import os

    done = subprocess.run(
        [sys.executable, "-c", CODE, mode],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **(env or {})},
    )
    assert done.returncode == 0, done.stderr[-2000:]
    kept, faults = done.stdout.split()
    return kept, int(faults)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_freed_memory_is_reused_without_page_faults() -> None:
    kept, faults_on = _run("on")
    if kept != "True":
        pytest.skip("not glibc")
    _, faults_off = _run("off")
    pages = 12 * (8 << 20) // 4096  # what each round touches; rounds 2 to 6 are summed
    assert faults_on < pages // 10  # from the second round on, the same pages are reused
    assert faults_off > pages  # glibc's defaults give them back and fault them in again


def test_env_turns_it_off() -> None:
    kept, _ = _run("on", {"NEURON_SIGNATURES_KEEP_FREED_MEMORY": "0"})
    assert kept == "False"
