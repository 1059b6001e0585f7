"""``neuron-signatures atlas`` and ``neuron``, in-process, and every bad input as one line."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from neuron_signatures.cli import main
from tests.atlas.conftest import atlas_bytes


def atlas_args(corpus: Path | str, out: Path, model: Path, *extra: str) -> list[str]:
    return [
        "atlas", "--corpus", str(corpus), "--out_dir", str(out), "--model_name", str(model),
        "--device", "cpu", "--model_dtype", "fp32", "--ctx_len", "12", "--top_k", "3",
        "--interval_samples", "2", "--write_scores_k", "3", "--layers", "1-2", "--no_progress",
        *extra,
    ]  # fmt: skip


@pytest.fixture(scope="module")
def cli_atlas(
    tiny_model_dir: Path, corpus_txt: Path, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    out = tmp_path_factory.mktemp("cli") / "A"
    assert main(atlas_args(corpus_txt, out, tiny_model_dir, "--max_tokens", "3e2")) == 0
    return out


def test_atlas_cli(cli_atlas: Path, capsys: pytest.CaptureFixture[str]) -> None:
    m = json.loads((cli_atlas / "atlas.json").read_text())
    assert m["complete"] and m["layers"] == [1, 2]
    assert 300 <= m["progress"]["tokens_seen"] < 300 + 12
    assert m["params"]["max_tokens"] == 300


def test_neuron_cli(cli_atlas: Path, capsys: pytest.CaptureFixture[str]) -> None:
    capsys.readouterr()
    assert main(["neuron", "--atlas", str(cli_atlas), "L2/N7", "--examples", "2"]) == 0
    out = capsys.readouterr().out
    assert "L2/N7" in out and "top examples" in out and "interval" in out and "<bos>" in out
    assert main(["neuron", "--atlas", str(cli_atlas), "2:7", "--json"]) == 0
    rec = json.loads(capsys.readouterr().out)
    assert rec["layer"] == 2 and rec["index"] == 7
    assert len(rec["top"]) == 3 and len(rec["top"][0]["acts"]) == len(rec["top"][0]["tokens"])
    assert rec["intervals"][0]["label"].startswith("interval ")
    assert len(rec["write_top"]) == 3
    assert main(["neuron", "--atlas", str(cli_atlas), "L0/N1"]) == 2  # layer 0 not in atlas
    assert "layer 0 is not in the atlas" in capsys.readouterr().err


def one_line_error(capsys: pytest.CaptureFixture[str], argv: list[str], match: str) -> None:
    capsys.readouterr()
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: ") and match in err, err


def test_bad_inputs(
    tiny_model_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    empty = tmp_path / "empty.txt"
    empty.write_text("\n\n  \n")
    nofield = tmp_path / "c.jsonl"
    nofield.write_text('{"body": "hello world"}\n')
    csv = tmp_path / "c.csv"
    csv.write_text("text\nhello\n")
    folder = tmp_path / "folder.txt"
    folder.mkdir()
    out = tmp_path / "A"
    cases = [
        (empty, [], "has no text"),
        (nofield, [], "no field 'text'"),
        (tmp_path / "missing.txt", [], "does not exist"),
        (csv, [], "unknown suffix"),
        (folder, [], "is not a file"),
        (
            nofield,
            ["--max_tokens", "0", "--text_field", "body"],
            "--max_tokens must be a positive number",
        ),
        ("hf:nobody/no-such-dataset", [], "cannot open hf:nobody/no-such-dataset"),
    ]
    for corpus, extra, match in cases:
        one_line_error(capsys, atlas_args(corpus, out, tiny_model_dir, *extra), match)
        assert not out.exists()


def test_resume_other_model_and_overwrite_keep_the_atlas(
    cli_atlas: Path, corpus_txt: Path, tiny_model_dir: Path, tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    from tests.tiny_models import save_model_folder

    other = save_model_folder("gemma3", tmp_path / "other-model")
    part = tmp_path / "part"
    shutil.copytree(cli_atlas, part)
    m = json.loads((part / "atlas.json").read_text())
    (part / "atlas.json").write_text(json.dumps({**m, "complete": False}))
    before = atlas_bytes(part)
    one_line_error(
        capsys, atlas_args(corpus_txt, part, other, "--resume"), f"is an atlas of {tiny_model_dir}"
    )
    one_line_error(
        capsys,
        atlas_args(tmp_path / "missing.txt", part, tiny_model_dir, "--overwrite"),
        "does not exist",
    )
    one_line_error(capsys, atlas_args(corpus_txt, part, tiny_model_dir), "--resume")
    assert atlas_bytes(part) == before


# -- issue 21: messages and early checks ---------------------------------------------------------
def test_atlas_json_path_opens_its_folder(
    cli_atlas: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``--atlas A/atlas.json`` opens A; another file of A says to give the folder."""
    capsys.readouterr()
    assert main(["neuron", "--atlas", str(cli_atlas / "atlas.json"), "L2/N7"]) == 0
    assert "L2/N7" in capsys.readouterr().out
    one_line_error(
        capsys,
        ["neuron", "--atlas", str(cli_atlas / "vocab.json"), "L2/N7"],
        f"{cli_atlas / 'vocab.json'} is a file: give the atlas folder ({cli_atlas})",
    )


def test_resume_of_a_finished_atlas_says_one_thing(
    cli_atlas: Path, corpus_txt: Path, tiny_model_dir: Path, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    from neuron_signatures import models

    def boom(*_a: object, **_k: object) -> None:
        raise AssertionError("the model was loaded")

    monkeypatch.setattr(models, "load_model", boom)
    before = atlas_bytes(cli_atlas)
    capsys.readouterr()
    argv = atlas_args(corpus_txt, cli_atlas, tiny_model_dir, "--max_tokens", "3e2", "--resume")
    assert main(argv) == 0
    out, err = capsys.readouterr()
    assert err == "" and out.count("\n") == 1, (out, err)
    assert "already complete" in out and "nothing to resume" in out and "wrote" not in out
    assert atlas_bytes(cli_atlas) == before


def test_early_errors_name_the_fix(
    tiny_model_dir: Path, corpus_txt: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    """Each fails in one line before the model loads (before the tokenizer but for the corpus
    read, which tokenises as it reads), and leaves no folder."""
    from neuron_signatures import models

    def boom(*_a: object, **_k: object) -> None:
        raise AssertionError("the model or tokenizer was loaded")

    monkeypatch.setattr(models, "load_model", boom)
    garbage = tmp_path / "bytes.txt"
    garbage.write_bytes(b"fine line\nsecond \xff\xfe line\n")
    (tmp_path / "file.txt").write_text("x")
    out = tmp_path / "A"
    cases = [
        (corpus_txt, out, ["--ctx_len", "1"], "--ctx_len must be at least 2 (BOS + one token)"),
        (
            garbage,
            out,
            [],
            f"corpus {garbage} is not UTF-8 text: byte offset 17 (line 2, column 8)",
        ),
        (corpus_txt, out, ["--resume"], f"nothing to resume in {out}"),
        (corpus_txt, tmp_path / "file.txt" / "A", [], "cannot write --out_dir"),
    ]
    for corpus, dest, extra, match in cases:
        with monkeypatch.context() as mp:
            if corpus != garbage:
                mp.setattr(models, "load_tokenizer", boom)
            one_line_error(capsys, atlas_args(corpus, dest, tiny_model_dir, *extra), match)
        assert not dest.exists()


def test_empty_text_corpus_does_not_suggest_text_field(
    tiny_model_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    empty = tmp_path / "empty.txt"
    empty.write_text("\n\n  \n")
    capsys.readouterr()
    assert main(atlas_args(empty, tmp_path / "A", tiny_model_dir)) == 2
    err = capsys.readouterr().err
    assert "has no text" in err and "--text_field" not in err, err
    rows = tmp_path / "empty.jsonl"
    rows.write_text('{"text": ""}\n')
    assert main(atlas_args(rows, tmp_path / "A", tiny_model_dir)) == 2
    assert "--text_field" in capsys.readouterr().err
