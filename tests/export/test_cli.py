"""``neuron-signatures export``: each format end to end in-process, the progress bar, and every bad
input as one line on stderr with exit code 2."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from neuron_signatures.atlas import open_atlas
from neuron_signatures.cli import main
from neuron_signatures.export.html_parts import anchor
from neuron_signatures.export.neuronpedia import NEURONS_SOURCESET
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


def files_under(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())


def test_overwrite_replaces_the_previous_neuron_record_export(
    export_atlas: Path, tmp_path: Path
) -> None:
    """The second export is all the folder holds: no neuron or layer of the first one is left."""
    out = tmp_path / "E"
    args = ["export", "--atlas", str(export_atlas), "--format", "neuron_record",
            "--out_dir", str(out), "--no_progress"]  # fmt: skip
    assert main([*args, "--neurons", "L1/N5,1:6,L2/N0"]) == 0
    (out / "1" / "5.json").write_text("stale")
    (out / "1" / ".6.json.999.tmp").write_text("a killed write's leftover")
    assert main([*args, "--neurons", "L1/N5", "--overwrite"]) == 0
    assert files_under(out) == ["1/5.json", "neuron_records.json"]
    assert json.loads((out / "1" / "5.json").read_text())["neuron_id"]["neuron_index"] == 5
    assert json.loads((out / "neuron_records.json").read_text())["n_neurons"] == 1
    assert open_neuron_records(out).layers == [1]


def test_overwrite_replaces_the_previous_neuronpedia_export(
    export_atlas: Path, tmp_path: Path
) -> None:
    out = tmp_path / "np"
    args = ["export", "--atlas", str(export_atlas), "--format", "neuronpedia",
            "--out_dir", str(out), "--batch_size", "16", "--no_progress"]  # fmt: skip
    assert main([*args, "--layers", "1,2", "--model_id", "a"]) == 0
    assert sorted(p.name for p in (out / "a").iterdir()) == ["1", "2"]
    assert main([*args, "--layers", "2", "--model_id", "b", "--overwrite"]) == 0
    assert [p.name for p in out.iterdir()] == ["b"]
    assert [p.name for p in (out / "b").iterdir()] == ["2"]


@pytest.mark.parametrize("fmt", ["neuron_record", "neuronpedia"])
def test_overwrite_deletes_nothing_an_export_did_not_write(
    export_atlas: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], fmt: str
) -> None:
    """A folder that holds other files is refused in one line; everything in it stays."""
    out = tmp_path / "E"
    args = ["export", "--atlas", str(export_atlas), "--format", fmt, "--out_dir", str(out),
            "--layers", "2", "--no_progress"]  # fmt: skip
    assert main(args) == 0
    (out / "notes.txt").write_text("mine")
    before = files_under(out)
    rc, _, err = run_cli(capsys, *args, "--layers", "1", "--overwrite")
    assert rc == 2 and err.count("\n") == 1
    assert f"holds {out / 'notes.txt'}, which a {fmt} export does not write" in err
    assert files_under(out) == before and (out / "notes.txt").read_text() == "mine"


def test_failed_overwrite_keeps_the_previous_export(
    export_atlas: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from neuron_signatures.atlas import Atlas

    out = tmp_path / "E"
    args = ["export", "--atlas", str(export_atlas), "--format", "neuron_record",
            "--out_dir", str(out), "--no_progress"]  # fmt: skip
    assert main([*args, "--neurons", "L1/N5,L1/N6"]) == 0
    before = {f: (out / f).read_bytes() for f in files_under(out)}
    real = Atlas.neuron

    def failing(self: Atlas, layer: int, index: int, n_intervals: int = 10) -> object:
        if index == 3:
            raise OSError("disk gone")
        return real(self, layer, index, n_intervals)

    monkeypatch.setattr(Atlas, "neuron", failing)
    with pytest.raises(OSError, match="disk gone"):
        main([*args, "--neurons", "L2/N0,L2/N3", "--overwrite"])
    assert {f: (out / f).read_bytes() for f in files_under(out)} == before
    assert [p.name for p in out.iterdir() if p.name.startswith(".")] == []


def unwritable(tmp_path: Path) -> list[Path]:
    """Folders no one can write, root included: under a regular file, and under /proc."""
    (tmp_path / "file.txt").write_text("x")
    bad = [tmp_path / "file.txt" / "E"]
    if Path("/proc/self").is_dir():
        bad.append(Path("/proc/no-such-export/E"))
    return bad


@pytest.mark.parametrize("fmt", ["neuron_record", "neuronpedia", "html"])
def test_unwritable_output_is_one_line_before_the_atlas_opens(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], fmt: str
) -> None:
    """The atlas given is not even an atlas: the output is checked first."""
    for folder in unwritable(tmp_path):
        where = ["--out", str(folder / "p.html"), "--neurons", "L1/N5"] if fmt == "html" else [
            "--out_dir", str(folder)]  # fmt: skip
        for extra in ((), ("--overwrite",)):
            rc, _, err = run_cli(capsys, "export", "--atlas", str(tmp_path / "no-atlas"),
                                 "--format", fmt, *where, *extra, "--no_progress")  # fmt: skip
            assert rc == 2 and err.count("\n") == 1 and "Traceback" not in err, err
            flag = "--out" if fmt == "html" else "--out_dir"
            assert f"cannot write {flag} {folder}" in err, err
    assert [p.name for p in tmp_path.iterdir()] == ["file.txt"]


def test_neuronpedia_branch(export_atlas: Path, tmp_path: Path) -> None:
    out = tmp_path / "np"
    rc = main(["export", "--atlas", str(export_atlas), "--format", "neuronpedia",
               "--out_dir", str(out), "--layers", "1", "--batch_size", "16",
               "--model_id", "tiny", "--no_progress"])  # fmt: skip
    assert rc == 0
    source = out / "tiny" / "1"
    assert json.loads((source / "source.jsonl").read_text())["setName"] == NEURONS_SOURCESET
    d_mlp = open_atlas(export_atlas).d_mlp
    assert files_under(source / "features") == [f"batch-{b}.jsonl.gz" for b in range(d_mlp // 16)]


def test_html_branch(export_atlas: Path, tmp_path: Path) -> None:
    out = tmp_path / "E" / "neurons.html"
    rc = main(["export", "--atlas", str(export_atlas), "--format", "html",
               "--neurons", "L1/N5,L2/N0", "--out", str(out), "--no_progress"])  # fmt: skip
    assert rc == 0 and out.is_file()
    page = out.read_text(encoding="utf-8")
    assert f'id="{anchor(1, 5)}"' in page and f'id="{anchor(2, 0)}"' in page


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
