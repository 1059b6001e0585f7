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


@pytest.mark.timeout(240)  # the driver used to probe the dead worker forever
def test_every_worker_lost_stops_with_the_resume_command(
    ray_local: Any, single: Path, tiny_model_dir: Path, corpus_txt: Path, tmp_path: Path
) -> None:
    """One worker, one restart: it is SIGKILLed in unit 0 (restarted; unit 0 then finishes) and
    again in unit 1, which leaves Ray nothing to restart while unit 1 is below its retry limit.
    The build stops with one line naming unit 1 and the resume command; the resume finishes it."""
    from neuron_signatures.scale.pool import WorkersLostError
    from neuron_signatures.scale.ray_atlas import RayOptions, build_atlas_ray

    n = json.loads((single / "atlas.json").read_text())["params"]["n_batches"]

    def kill_once_in_each_unit(b: int) -> None:
        marker = tmp_path / f"killed_{b}"
        if b in (0, n - 1) and not marker.exists():
            marker.write_text(str(os.getpid()))
            os.kill(os.getpid(), signal.SIGKILL)

    out = tmp_path / "ray"
    cfg = config(out, corpus_txt, model_name=str(tiny_model_dir))
    opts = RayOptions(workers=1, units=2, max_retries=1, resume_command="RESUME-CMD")
    with pytest.raises(WorkersLostError) as e:
        build_atlas_ray(cfg, opts, on_batch=kill_once_in_each_unit)
    msg = str(e.value)
    assert "\n" not in msg
    assert "every Ray worker is lost (1 of 1, each beyond its 1 restarts" in msg
    assert "not finished: unit 1;" in msg and msg.endswith("then run: RESUME-CMD")
    assert (tmp_path / f"killed_{n - 1}").exists()
    assert (out / "parts" / "unit_0000" / "atlas.json").is_file()
    assert not (out / "atlas.json").exists()
    cfg = config(out, corpus_txt, model_name=str(tiny_model_dir), resume=True)
    build_atlas_ray(cfg, RayOptions(workers=1, units=2))
    log = json.loads((out / "build.json").read_text())
    assert log["units_skipped"] == 1 and log["units_run"] == 1
    assert atlas_bytes(out) == atlas_bytes(single)
