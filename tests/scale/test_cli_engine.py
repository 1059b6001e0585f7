"""The ``--engine`` flag: a one-line error without Ray, and dump's engine not yet on Ray."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

import pytest

from neuron_signatures.cli import main


def test_atlas_engine_ray_without_ray(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray → ImportError
    rc = main(["atlas", "--out_dir", str(tmp_path / "a"), "--engine", "ray", "--no_progress"])
    err = capsys.readouterr().err
    assert rc == 2
    assert err.strip().count("\n") == 0
    assert "pip install 'neuron-signatures[ray]'" in err
    assert not (tmp_path / "a").exists()


def test_dump_engine_ray_without_ray(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)
    out = tmp_path / "r"
    rc = main(["dump", "--single_prompt", "hi", "--out_dir", str(out), "--engine", "ray"])
    assert rc == 2
    assert "pip install 'neuron-signatures[ray]'" in capsys.readouterr().err
    assert not out.exists()


@pytest.mark.parametrize("command", ["atlas", "dump"])
def test_lost_workers_error_quotes_the_exact_resume_command(
    command: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    """The CLI hands its own command line (``--overwrite`` dropped, ``--resume`` added) to the
    Ray driver, whose one-line error for lost workers ends with it."""
    pytest.importorskip("ray")
    from neuron_signatures.scale import ray_atlas, ray_dump
    from neuron_signatures.scale.pool import WorkersLostError

    def lost(cfg: object, opts: ray_atlas.RayOptions) -> None:
        raise WorkersLostError(f"every Ray worker is lost; then run: {opts.resume_command}")

    monkeypatch.setattr(ray_atlas, "build_atlas_ray", lost)
    monkeypatch.setattr(ray_dump, "dump_ray", lost)
    out = tmp_path / "my out"
    source = [] if command == "atlas" else ["--single_prompt", "hi"]
    argv = [command, *source, "--out_dir", str(out), "--engine", "ray", "--workers", "1"]
    assert main([*argv, "--overwrite"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0
    expected = shlex.join(["neuron-signatures", *argv, "--resume"])
    assert err.endswith(f"then run: {expected}")


@pytest.mark.parametrize("command", ["atlas", "dump"])
def test_unwritable_out_dir_is_one_line_before_ray_starts(
    command: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    """A path under a regular file (root ignores permission bits) fails before Ray starts."""
    ray = pytest.importorskip("ray")

    def no_ray(*_: object, **__: object) -> None:
        raise AssertionError("Ray was started")

    monkeypatch.setattr(ray, "init", no_ray)
    blocker = tmp_path / "file.txt"
    blocker.write_text("x")
    source = [] if command == "atlas" else ["--single_prompt", "hi"]
    out = blocker / "sub"
    rc = main([command, *source, "--out_dir", str(out), "--engine", "ray", "--no_progress"])
    err = capsys.readouterr().err.strip()
    assert rc == 2, err
    assert err.count("\n") == 0 and "--out_dir" in err
    assert blocker.read_text() == "x"
