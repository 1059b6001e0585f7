"""The ``--engine`` flag: a one-line error without Ray, and dump's engine not yet on Ray."""

from __future__ import annotations

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
