"""``browse`` and the prototype shim: flags checked before the app starts, one-line errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from neuron_signatures import poc1_browse_activations
from neuron_signatures.cli import main
from neuron_signatures.tui import BrowserApp

from .conftest import SynthRun


@pytest.fixture
def started(monkeypatch: pytest.MonkeyPatch) -> list[BrowserApp]:
    """Replace ``App.run``: records the apps that would start instead of opening a terminal UI."""
    apps: list[BrowserApp] = []

    def fake_run(self: BrowserApp, **kwargs: object) -> None:
        apps.append(self)

    monkeypatch.setattr(BrowserApp, "run", fake_run)
    return apps


@pytest.fixture
def incomplete_run(synth_run: SynthRun, tmp_path: Path) -> Path:
    """A copy of the manifest marked unfinished, as an interrupted dump leaves it."""
    out = tmp_path / "unfinished"
    out.mkdir()
    manifest = json.loads((synth_run.path / "manifest.json").read_text())
    manifest["complete"] = False
    (out / "manifest.json").write_text(json.dumps(manifest))
    return out


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--layer", "4"], "layer 4 is not in this run"),
        (["--neuron", "256"], "neuron 256 is out of range"),
        (["--prompt_idx", "12"], "prompt index 12 is out of range"),
        (["--prompt_idx", "no_such_id"], "no prompt with id 'no_such_id'"),
        (["--ctx_idx", "999"], "ctx_idx 999 is out of range"),
        (["--window", "-2"], "--window must be 0 or more"),
    ],
)
def test_out_of_range_flags_exit_2_without_starting(
    synth_run: SynthRun,
    started: list[BrowserApp],
    capsys: pytest.CaptureFixture[str],
    flags: list[str],
    message: str,
) -> None:
    rc = main(["browse", "--run_dir", str(synth_run.path), *flags])
    err = capsys.readouterr().err
    assert rc == 2 and not started
    assert err.startswith("error: ") and message in err and err.count("\n") == 1


def test_missing_and_incomplete_runs(
    tmp_path: Path, incomplete_run: Path, started: list[BrowserApp], capsys: pytest.CaptureFixture
) -> None:
    assert main(["browse", "--run_dir", str(tmp_path / "nope")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "does not exist" in err and err.count("\n") == 1
    assert poc1_browse_activations.main(["--run_dir", str(incomplete_run)]) == 2
    err = capsys.readouterr().err
    assert "unfinished dump" in err and err.count("\n") == 1
    assert not started


def test_shim_and_command_take_the_prototype_flags(
    synth_run: SynthRun, started: list[BrowserApp]
) -> None:
    flags = ["--run_dir", str(synth_run.path), "--prompt_idx", "3", "--layer", "2"]
    flags += ["--neuron", "7", "--ctx_idx", "4", "--window", "5", "--all_tokens"]
    assert poc1_browse_activations.main(flags) == 0
    assert main(["browse", *flags[:2], "--prompt_idx", "p0002_dallas"]) == 0
    s, s2 = started[0].state, started[1].state
    expected = (3, 2, 7, 4, 5, True)
    assert (s.prompt_idx, s.layer, s.neuron, s.ctx_idx, s.window, s.show_all) == expected
    assert (s2.prompt_idx, s2.layer, s2.neuron, s2.window, s2.show_all) == (2, 0, 0, 15, False)


def test_screenshot_writes_an_svg(ranked_run: SynthRun, tmp_path: Path) -> None:
    out = tmp_path / "img" / "tui.svg"
    flags = f"--neuron 17 --layer 2 --screenshot {out} --screenshot_size 120x36".split()
    rc = main(["browse", "--run_dir", str(ranked_run.path), *flags])
    assert rc == 0
    svg = out.read_text()
    assert svg.startswith("<svg") and "Neuron&#160;17/255" in svg and "top_neurons" in svg


def test_bad_screenshot_size(synth_run: SynthRun, capsys: pytest.CaptureFixture[str]) -> None:
    flags = ["--screenshot", "x.svg", "--screenshot_size", "big"]
    rc = main(["browse", "--run_dir", str(synth_run.path), *flags])
    assert rc == 2 and "is not like 140x42" in capsys.readouterr().err


def test_tui_imports_without_torch() -> None:
    code = (
        "import sys, neuron_signatures.tui, neuron_signatures.tui.timing, "
        "neuron_signatures.commands.browse, neuron_signatures.poc1_browse_activations; "
        "bad = [m for m in ('torch', 'transformers', 'transformer_lens') if m in sys.modules]; "
        "sys.exit(1 if bad else 0)"
    )
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0
