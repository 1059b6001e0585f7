"""A real ``kill -9`` in the middle of a dump, then ``--resume``: the bytes of an uninterrupted run.

The child dump is made to stop for good after a known number of shards
(``$NEURON_SIGNATURES_PAUSE_AFTER_SHARDS``), so the kill always lands mid-run: no race with a dump
that finishes first, no skip.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from neuron_signatures.capture import PAUSE_ENV
from neuron_signatures.cli import main
from neuron_signatures.store import open_run, verify_run
from neuron_signatures.store.progress import read_progress
from tests.tiny_models import exact_dump_args

ROOT = Path(__file__).resolve().parents[2]
PAUSE_AFTER = 3


def dump_args(prompts: Path, out: Path, model: Path) -> list[str]:
    flags = exact_dump_args(prompts, out, model, save_dtype="bf16", prompts_flag="--prompts")
    return ["dump", *flags, "--batch_size", "2"]


def test_kill_9_then_resume(tiny_model_dir: Path, tmp_path: Path) -> None:
    prompts = tmp_path / "p.txt"
    prompts.write_text("\n".join(f"hello world {'foo ' * (i % 7)}bar" for i in range(20)))
    full, part = tmp_path / "full", tmp_path / "part"
    assert main(dump_args(prompts, full, tiny_model_dir)) == 0
    n_shards = len(json.loads((full / "manifest.json").read_text())["shards"])
    assert n_shards > PAUSE_AFTER + 1
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT)}
    env[PAUSE_ENV] = str(PAUSE_AFTER)
    log = tmp_path / "child.log"
    with open(log, "wb") as child_err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "neuron_signatures", *dump_args(prompts, part, tiny_model_dir)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=child_err,
        )
    try:
        deadline = time.monotonic() + 180
        while len(read_progress(part)) < PAUSE_AFTER:
            assert proc.poll() is None, log.read_text()
            assert time.monotonic() < deadline, "the child never wrote its shards"
            time.sleep(0.02)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    assert sorted(read_progress(part)) == list(range(PAUSE_AFTER))
    assert not json.loads((part / "manifest.json").read_text())["complete"]
    report = verify_run(part)
    assert report.incomplete and report.n_written == PAUSE_AFTER
    kept = {p.name: p.stat().st_mtime_ns for p in (part / "activations").glob("*.safetensors")}
    assert len(kept) == PAUSE_AFTER

    assert main([*dump_args(prompts, part, tiny_model_dir), "--resume"]) == 0
    assert {name: (part / "activations" / name).stat().st_mtime_ns for name in kept} == kept
    assert verify_run(part).ok
    names = sorted(p.name for p in (full / "activations").iterdir())
    assert names == sorted(p.name for p in (part / "activations").iterdir())
    for name in names:
        assert (part / "activations" / name).read_bytes() == (
            full / "activations" / name
        ).read_bytes()
    a, b = open_run(part), open_run(full)
    for p in a.prompts:
        np.testing.assert_array_equal(a.prompt_acts(p.index), b.prompt_acts(p.index))
