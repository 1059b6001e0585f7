"""The ``explain`` run: same bytes twice, after ``kill -9`` + ``--resume``, and bad input as one
line with exit code 2."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from neuron_signatures.cli import main
from tests.explain.conftest import explain, explanation_bytes
from tests.paused_child import start_paused

ROOT = Path(__file__).resolve().parents[2]


def test_two_runs_same_bytes(
    explained: Path, planted_atlas: Path, planted_lm: Any, tmp_path: Path
) -> None:
    again = tmp_path / "A"
    shutil.copytree(planted_atlas, again)
    explain(planted_lm, again)
    first = explanation_bytes(explained)
    layers = [
        f"layers/layer_00{i}{ext}" for i in range(3) for ext in (".jsonl", ".tables.safetensors")
    ]
    assert set(first) == {"explanations.json", *layers}
    assert explanation_bytes(again) == first
    man = json.loads(first["explanations.json"])
    assert man["complete"] and man["random_windows"] == sorted(man["random_windows"])
    # a finished run resumed does nothing and changes nothing
    explain(planted_lm, again, resume=True)
    assert explanation_bytes(again) == first
    assert json.loads((again / "explanations" / "run.json").read_text())["layers_done_before"] == 3


def _atlas_args(corpus: Path, out: Path, model: Path) -> list[str]:
    return [
        "atlas", "--corpus", str(corpus), "--out_dir", str(out), "--model_name", str(model),
        "--device", "cpu", "--model_dtype", "fp32", "--ctx_len", "12", "--top_k", "4",
        "--interval_samples", "3", "--write_scores_k", "3", "--no_progress",
    ]  # fmt: skip


EXPLAIN = ["--n_random_tokens", "200", "--batch_size", "4", "--device", "cpu"]


@pytest.fixture(scope="module")
def cli_atlas(tiny_model_dir: Path, explain_corpus: Path, tmp_path_factory: Any) -> Path:
    """An atlas of the tiny folder model, built by the CLI (a child process can load it)."""
    out = tmp_path_factory.mktemp("cli_atlas") / "A"
    assert main(_atlas_args(explain_corpus, out, tiny_model_dir)) == 0
    return out


def test_kill_9_then_resume(cli_atlas: Path, tmp_path: Path) -> None:
    """A real ``kill -9`` after the first layer file; ``--resume`` redoes the other layers only
    and ends with the bytes of an uninterrupted run."""
    from neuron_signatures.explain.run import PAUSE_ENV

    full, part = tmp_path / "full", tmp_path / "part"
    shutil.copytree(cli_atlas, full)
    shutil.copytree(cli_atlas, part)
    assert main(["explain", "--atlas", str(full), *EXPLAIN]) == 0
    log = tmp_path / "log"
    proc = start_paused(["explain", "--atlas", str(part), *EXPLAIN], {PAUSE_ENV: "1"}, log)
    # a second run while the first one writes: refused in one line, nothing touched
    before = explanation_bytes(part)
    for flag in ("--resume", "--overwrite"):
        assert main(["explain", "--atlas", str(part), *EXPLAIN, flag]) == 2
    assert explanation_bytes(part) == before
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    layers = sorted(p.name for p in (part / "explanations" / "layers").iterdir())
    assert layers == ["layer_000.jsonl", "layer_000.tables.safetensors"]
    assert not json.loads((part / "explanations" / "explanations.json").read_text())["complete"]
    assert main(["explain", "--atlas", str(part), *EXPLAIN]) == 2  # neither flag: refused
    assert main(["explain", "--atlas", str(part), *EXPLAIN, "--resume"]) == 0
    assert json.loads((part / "explanations" / "run.json").read_text())["layers_done_before"] == 1
    assert explanation_bytes(part) == explanation_bytes(full)


def test_second_run_on_a_locked_folder_is_refused(
    explained: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """While a run holds ``explanations/.lock`` another is refused with one line (exit 2) and
    changes nothing; a lock taken on a fresh folder leaves nothing behind when released."""
    from neuron_signatures.explain.output import FolderLock

    before = explanation_bytes(explained)
    with FolderLock(explained / "explanations"):
        one_line_error(
            capsys, ["explain", "--atlas", str(explained), "--resume"], "another explain run"
        )
    assert explanation_bytes(explained) == before
    fresh = explained / "not-yet"
    FolderLock(fresh).release()
    assert not fresh.exists()


def one_line_error(capsys: pytest.CaptureFixture[str], argv: list[str], match: str) -> None:
    capsys.readouterr()
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: ") and match in err, err
    assert "Traceback" not in err


def test_bad_input_is_one_line(
    explained: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    a = str(explained)
    one_line_error(capsys, ["explain", "--atlas", str(tmp_path / "nope")], "is not an atlas")
    one_line_error(
        capsys, ["explain", "--atlas", a, "--layers", "7"], "--layers [7] not in the atlas"
    )
    one_line_error(capsys, ["explain", "--atlas", a], "--resume to finish them or --overwrite")
    one_line_error(capsys, ["explain", "--atlas", a, "--resume", "--overwrite"], "not both")
    one_line_error(capsys, ["explain", "--atlas", a, "--n_random_tokens", "0"], "at least 1")
    one_line_error(
        capsys, ["explain", "--atlas", a, "--resume", "--seed", "5"], "other params than these"
    )
    bare = tmp_path / "bare"
    shutil.copytree(explained, bare, ignore=shutil.ignore_patterns("explanations"))
    (bare / "windows.safetensors").unlink()
    one_line_error(capsys, ["explain", "--atlas", str(bare)], "has no windows.safetensors")
    assert not (bare / "explanations").exists()
    # nothing already written is lost by a refused run
    before = explanation_bytes(explained)
    assert main(["explain", "--atlas", a, "--layers", "9", "--overwrite"]) == 2
    assert explanation_bytes(explained) == before


def test_overwrite_keeps_old_explanations_when_the_model_fails(explained: Path) -> None:
    from neuron_signatures.errors import ModelLoadError
    from neuron_signatures.explain import ExplainConfig, explain_atlas

    def fail(_: Any) -> Any:
        raise ModelLoadError("no model here")

    before = explanation_bytes(explained)
    with pytest.raises(ModelLoadError):
        explain_atlas(ExplainConfig(atlas=explained, overwrite=True), load=fail)
    assert explanation_bytes(explained) == before


def test_reading_explanations_imports_no_torch(explained: Path) -> None:
    """The UIs read explanations without torch (the forward imports it only when run)."""
    code = (
        "import sys\n"
        "from neuron_signatures.explain import read_explanations, read_tables\n"
        f"m, recs = read_explanations({str(explained)!r})\n"
        "assert m['complete'] and next(recs)['layer'] == 0\n"
        f"read_tables({str(explained)!r}, 0)\n"
        "print('torch' in sys.modules)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout.strip() == "False", out.stderr
