"""``atlas --engine ray`` on a local Ray with 2 workers: the same bytes as one process, after a
killed worker, and after an interrupted driver resumed."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path
from typing import Any

import pytest

from neuron_signatures.errors import BadArgumentError
from tests.atlas.conftest import atlas_bytes, config

pytest.importorskip("ray")


class Interrupted(Exception):
    pass


@pytest.fixture(scope="module")
def single(
    tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path, corpus_txt: Path
) -> Path:
    from neuron_signatures.atlas.build import build_atlas

    out = tmp_path_factory.mktemp("single") / "atlas"
    return build_atlas(config(out, corpus_txt, model_name=str(tiny_model_dir)))


def ray_build(out: Path, model: Path, corpus: Path, units: int = 4, **kw: Any) -> Path:
    from neuron_signatures.scale.ray_atlas import RayOptions, build_atlas_ray

    hooks = {k: kw.pop(k) for k in ("on_batch", "on_unit", "on_merge") if k in kw}
    cfg = config(out, corpus, model_name=str(model), **kw)
    return build_atlas_ray(cfg, RayOptions(workers=2, units=units), **hooks)


def test_ray_equals_single_process(
    ray_local: Any, single: Path, tiny_model_dir: Path, corpus_txt: Path, tmp_path: Path
) -> None:
    out = ray_build(tmp_path / "ray", tiny_model_dir, corpus_txt)
    assert atlas_bytes(out) == atlas_bytes(single)
    log = json.loads((out / "build.json").read_text())
    assert log["engine"] == "ray" and log["units_run"] == log["units"] > 1
    assert sum(w["units"] for w in log["per_worker"].values()) == log["units"]
    # every merge ran on a worker: one fewer than the units
    assert sum(w["merges"] for w in log["per_worker"].values()) == log["merges_run"] == 3
    assert not (out / "parts").exists()


def test_killed_worker_loses_nothing(
    ray_local: Any, single: Path, tiny_model_dir: Path, corpus_txt: Path, tmp_path: Path
) -> None:
    n = json.loads((single / "atlas.json").read_text())["params"]["n_batches"]
    marker = tmp_path / "killed"
    victim = n // 2  # a batch in the middle of a unit: its worker dies there, once

    def kill_once(b: int) -> None:
        if b == victim and not marker.exists():
            marker.write_text(str(os.getpid()))
            os.kill(os.getpid(), signal.SIGKILL)

    out = ray_build(tmp_path / "ray", tiny_model_dir, corpus_txt, units=2, on_batch=kill_once)
    assert marker.exists()
    log = json.loads((out / "build.json").read_text())
    assert log["resubmitted"] >= 1
    assert atlas_bytes(out) == atlas_bytes(single)


def test_worker_killed_in_a_merge_loses_nothing(
    ray_local: Any, single: Path, tiny_model_dir: Path, corpus_txt: Path, tmp_path: Path
) -> None:
    """SIGKILL after a merge wrote its layers, before its rename: the merge is resubmitted, its
    half-written folder ignored, and the atlas is still the one process's, byte for byte."""
    marker = tmp_path / "killed"

    def kill_once(a: int, b: int, c: int) -> None:
        if not marker.exists():
            marker.write_text(f"{a} {b} {c}")
            os.kill(os.getpid(), signal.SIGKILL)

    out = ray_build(tmp_path / "ray", tiny_model_dir, corpus_txt, units=3, on_merge=kill_once)
    assert marker.exists()
    log = json.loads((out / "build.json").read_text())
    assert log["resubmitted"] >= 1 and log["merges_run"] == 2
    assert atlas_bytes(out) == atlas_bytes(single)


def test_interrupted_driver_resumes(
    ray_local: Any, single: Path, tiny_model_dir: Path, corpus_txt: Path, tmp_path: Path
) -> None:
    def stop(k: int) -> None:
        if k == 2:
            raise Interrupted

    out = tmp_path / "ray"
    with pytest.raises(Interrupted):
        ray_build(out, tiny_model_dir, corpus_txt, on_unit=stop)
    kept = {p.name for p in (out / "parts").iterdir()} - {"static", "units.json"}
    assert kept and not (out / "atlas.json").exists()  # finished units / spans wait on disk
    with pytest.raises(BadArgumentError, match=r"params.top_k: 4 \(atlas\) vs 5 \(now\)"):
        ray_build(out, tiny_model_dir, corpus_txt, resume=True, top_k=5)
    ray_build(out, tiny_model_dir, corpus_txt, resume=True)
    log = json.loads((out / "build.json").read_text())
    assert log["units_skipped"] >= 2 and log["units_run"] == log["units"] - log["units_skipped"]
    assert atlas_bytes(out) == atlas_bytes(single)
    # Resuming a complete atlas leaves it alone.
    ray_build(out, tiny_model_dir, corpus_txt, resume=True)
    assert atlas_bytes(out) == atlas_bytes(single)


def test_cli_engine_ray(
    ray_local: Any,
    single: Path,
    tiny_model_dir: Path,
    corpus_txt: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from neuron_signatures.cli import main
    from tests.atlas.conftest import SMALL

    flags = [f"--{k}={v}" for k, v in SMALL.items() if k not in ("progress",)]
    out = tmp_path / "cli"
    argv = ["atlas", "--corpus", str(corpus_txt), "--out_dir", str(out), *flags]
    argv += ["--model_name", str(tiny_model_dir), "--no_progress", "--engine", "ray"]
    assert main([*argv, "--workers", "2", "--units", "3"]) == 0
    assert "wrote" in capsys.readouterr().out
    assert atlas_bytes(out) == atlas_bytes(single)
