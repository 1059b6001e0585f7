"""``neuron-signatures export``: each format end to end in-process, the progress bar, and every bad
input as one line on stderr with exit code 2."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from neuron_signatures.atlas import open_atlas
from neuron_signatures.cli import main
from neuron_signatures.export.records import open_neuron_records
from tests.cli_run import run_cli
from tests.export import openai_transcription as oai


def test_neuron_record_export_of_layers(
    export_atlas: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "E"
    rc = main(["export", "--atlas", str(export_atlas), "--format", "neuron_record",
               "--out_dir", str(out), "--layers", "0,2"])  # fmt: skip
    assert rc == 0
    cap = capsys.readouterr()
    d_mlp = open_atlas(export_atlas).d_mlp
    assert cap.out.strip() == f"wrote {2 * d_mlp} neurons as neuron_record to {out}"
    assert "export neuron_record" in cap.err and f"{2 * d_mlp}/{2 * d_mlp}" in cap.err  # the bar
    folder = open_neuron_records(out)
    assert folder.layers == [0, 2] and len(folder.files) == 2 * d_mlp
    assert isinstance(oai.loads((out / "2" / "7.json").read_bytes()), oai.NeuronRecord)


def test_overwrite_writes_into_an_existing_export(export_atlas: Path, tmp_path: Path) -> None:
    out = tmp_path / "E"
    args = ["export", "--atlas", str(export_atlas), "--format", "neuron_record",
            "--out_dir", str(out), "--neurons", "L1/N5,1:6", "--no_progress"]  # fmt: skip
    assert main(args) == 0
    (out / "1" / "5.json").write_text("stale")
    assert main([*args, "--neurons", "L1/N5", "--overwrite"]) == 0
    assert json.loads((out / "1" / "5.json").read_text())["neuron_id"]["neuron_index"] == 5
    assert sorted(p.name for p in (out / "1").iterdir()) == ["5.json", "6.json"]


def test_neuronpedia_branch(export_atlas: Path, tmp_path: Path) -> None:
    pytest.importorskip("neuron_signatures.export.neuronpedia")
    out = tmp_path / "np"
    rc = main(["export", "--atlas", str(export_atlas), "--format", "neuronpedia",
               "--out_dir", str(out), "--layers", "1", "--batch_size", "16",
               "--model_id", "tiny", "--no_progress"])  # fmt: skip
    assert rc == 0 and any(p.is_file() for p in out.rglob("*"))


def test_html_branch(export_atlas: Path, tmp_path: Path) -> None:
    pytest.importorskip("neuron_signatures.export.html")
    out = tmp_path / "E" / "neurons.html"
    rc = main(["export", "--atlas", str(export_atlas), "--format", "html",
               "--neurons", "L1/N5,L2/N0", "--out", str(out), "--no_progress"])  # fmt: skip
    assert rc == 0 and out.is_file() and "L1/N5" in out.read_text(encoding="utf-8")


@pytest.mark.parametrize(
    ("extra", "needle"),
    [
        (["--format", "csv", "--out_dir", "{tmp}/x"], "invalid choice: 'csv'"),
        (["--format", "html", "--neurons", "L1/N5"], "needs --out"),
        (["--format", "html", "--out", "{tmp}/a.html"], "needs --neurons"),
        (["--format", "html", "--neurons", "L1/N5", "--out", "{tmp}"], "is a folder"),
        (["--format", "neuron_record"], "needs --out_dir"),
        (["--format", "neuron_record", "--out", "{tmp}/a.html"], "--out is not used"),
        (["--format", "neuron_record", "--out_dir", "{tmp}/x", "--batch_size", "8"], "neuronpedia"),
        (["--format", "neuron_record", "--out_dir", "{tmp}/x", "--run_dir", "R"], "html"),
        (["--format", "neuronpedia", "--out_dir", "{tmp}/x", "--batch_size", "0"], "at least 1"),
        (["--format", "neuron_record", "--out_dir", "{tmp}/x", "--neurons", "L1/N64"], "0-63"),
        (["--format", "neuron_record", "--out_dir", "{tmp}/x", "--neurons", "L7/N0"], "0-2"),
        (["--format", "neuron_record", "--out_dir", "{tmp}/x", "--neurons", "abc"], "L17/N1152"),
        (["--format", "neuron_record", "--out_dir", "{tmp}/x", "--layers", "x"], "0,3,5-7"),
        (["--format", "neuron_record", "--out_dir", "{tmp}/x", "--layers", "5"], "layers: 0-2"),
        (["--format", "neuron_record", "--out_dir", "{tmp}/full"], "not empty"),
        (["--format", "neuron_record", "--out_dir", "{tmp}/full/f.txt"], "is a file"),
        (["--format", "html", "--neurons", "L1/N5", "--out", "{tmp}/full/f.txt"], "exists"),
        (["--format", "html", "--neurons", "L1/N5", "--out", "{tmp}/a.html",
          "--run_dir", "{tmp}/norun"], "{tmp}/norun"),
    ],
)  # fmt: skip
def test_bad_inputs_exit_2_with_one_line(
    export_atlas: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    extra: list[str],
    needle: str,
) -> None:
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "f.txt").write_text("keep me")
    argv = ["export", "--atlas", str(export_atlas), "--no_progress"]
    argv += [a.replace("{tmp}", str(tmp_path)) for a in extra]
    rc, _, err = run_cli(capsys, *argv)
    assert rc == 2
    assert err.count("\n") == 1 and needle.replace("{tmp}", str(tmp_path)) in err, err
    assert (tmp_path / "full" / "f.txt").read_text() == "keep me"  # nothing lost
    assert not (tmp_path / "x").exists() and not (tmp_path / "a.html").exists()


def test_not_an_atlas_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["export", "--atlas", str(tmp_path), "--format", "neuron_record",
            "--out_dir", str(tmp_path / "E")]  # fmt: skip
    rc, _, err = run_cli(capsys, *argv)
    assert rc == 2
    assert err.count("\n") == 1 and str(tmp_path) in err
