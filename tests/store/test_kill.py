"""A real ``kill -9`` in the middle of a dump, then ``--resume``: same as an uninterrupted run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from neuron_signatures.cli import main
from neuron_signatures.store import open_run, verify_run
from tests.tiny_models import exact_dump_args

ROOT = Path(__file__).resolve().parents[2]


def dump_args(prompts: Path, out: Path, model: Path) -> list[str]:
    flags = exact_dump_args(prompts, out, model, save_dtype="bf16", prompts_flag="--prompts")
    return ["dump", *flags, "--batch_size", "1"]


def test_kill_9_then_resume(tiny_model_dir: Path, tmp_path: Path) -> None:
    prompts = tmp_path / "p.txt"
    prompts.write_text("\n".join(f"hello world {'foo ' * (i % 7)}bar" for i in range(60)))
    full, part = tmp_path / "full", tmp_path / "part"
    assert main(dump_args(prompts, full, tiny_model_dir)) == 0
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "neuron_signatures", *dump_args(prompts, part, tiny_model_dir)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    log = part / "activations" / "progress.jsonl"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if log.is_file() and log.read_text().count("\n") >= 3:
            break
        time.sleep(0.01)
    if proc.poll() is not None:
        pytest.skip("the dump finished before it could be killed")
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert not json.loads((part / "manifest.json").read_text())["complete"]
    assert main([*dump_args(prompts, part, tiny_model_dir), "--resume"]) == 0
    a, b = open_run(part), open_run(full)
    assert verify_run(part).ok
    for name in sorted(p.name for p in (full / "activations").iterdir()):
        assert (part / "activations" / name).read_bytes() == (
            full / "activations" / name
        ).read_bytes()
    for p in a.prompts:
        np.testing.assert_array_equal(a.prompt_acts(p.index), b.prompt_acts(p.index))
