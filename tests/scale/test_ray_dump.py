"""``dump --engine ray`` on a local Ray with 2 workers: the shards and manifest of one process,
also after a worker is killed between writing a shard and reporting it."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path
from typing import Any

import pytest

from neuron_signatures.cli import main
from tests.tiny_models import exact_dump_args

pytest.importorskip("ray")

TIMES = ("created_at_utc", "completed_at_utc", "dump_seconds", "resumed_at_utc")


def run_files(run: Path) -> tuple[dict[str, Any], dict[str, bytes]]:
    m = json.loads((run / "manifest.json").read_text())
    shards = {p.name: p.read_bytes() for p in sorted((run / "activations").iterdir())}
    return {k: v for k, v in m.items() if k not in TIMES}, shards


def ray_config(tiny_run: Path, model: Path, prompts_file: Path, out: Path) -> Any:
    """The dump of ``tiny_run`` (same prompts, model, dtypes), into ``out``, 2 prompts a shard."""
    from neuron_signatures.capture import DumpConfig
    from neuron_signatures.prompts import load_prompts

    m = json.loads((tiny_run / "manifest.json").read_text())
    return DumpConfig(
        prompts=load_prompts(prompts_file),
        out_dir=out,
        model_name=str(model),
        device="cpu",
        model_dtype="fp32",
        save_dtype=m["save_dtype"],
        batch_size=2,
        progress=False,
    )


def test_ray_dump_equals_single_process(
    ray_local: Any, tiny_run: Path, tiny_model_dir: Path, prompts_file: Path, tmp_path: Path
) -> None:
    out = tmp_path / "ray"
    args = exact_dump_args(prompts_file, out, tiny_model_dir)
    assert main(["dump", *args, "--batch_size", "2", "--engine", "ray", "--workers", "2"]) == 0
    assert run_files(out) == run_files(tiny_run)


def test_ray_dump_killed_worker(
    ray_local: Any, tiny_run: Path, tiny_model_dir: Path, prompts_file: Path, tmp_path: Path
) -> None:
    from neuron_signatures.scale.ray_dump import RayOptions, dump_ray

    marker = tmp_path / "killed"

    def kill_once(s: int) -> None:  # the shard file is whole but never reported
        if s == 1 and not marker.exists():
            marker.write_text(str(os.getpid()))
            os.kill(os.getpid(), signal.SIGKILL)

    cfg = ray_config(tiny_run, tiny_model_dir, prompts_file, tmp_path / "ray")
    dump_ray(cfg, RayOptions(workers=2), on_shard=kill_once)
    assert marker.exists()
    assert run_files(tmp_path / "ray") == run_files(tiny_run)


def test_ray_dump_interrupted_driver_resumes(
    ray_local: Any, tiny_run: Path, tiny_model_dir: Path, prompts_file: Path, tmp_path: Path
) -> None:
    from neuron_signatures.scale.ray_dump import RayOptions, dump_ray

    def stop(s: int) -> None:
        raise KeyboardInterrupt

    cfg = ray_config(tiny_run, tiny_model_dir, prompts_file, tmp_path / "ray")
    with pytest.raises(KeyboardInterrupt):
        dump_ray(cfg, RayOptions(workers=2), on_batch=stop)
    assert not json.loads((tmp_path / "ray" / "manifest.json").read_text())["complete"]
    cfg.resume = True
    result = dump_ray(cfg, RayOptions(workers=2))
    assert result.shards_kept >= 1
    assert run_files(tmp_path / "ray") == run_files(tiny_run)
