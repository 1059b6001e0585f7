"""Builds: deterministic bytes, resume after a kill, merge of partials, and refused resumes."""

from __future__ import annotations

import json
import signal
import subprocess
from pathlib import Path
from typing import Any

import pytest

from neuron_signatures.atlas import open_atlas
from neuron_signatures.atlas.build import merge_atlases
from neuron_signatures.errors import (
    BadArgumentError,
    BadPromptsError,
    IncompleteRunError,
    OutputNotWritableError,
    RunExistsError,
    RunFormatError,
)
from tests.atlas.conftest import atlas_bytes, build
from tests.paused_child import start_paused
from tests.tiny_models import make_models


class Killed(Exception):
    pass


@pytest.fixture(scope="module")
def lm(tiny_tokenizer: Any) -> Any:
    from neuron_signatures.models import wrap_hf_model

    model, _ = make_models("gemma2")
    return wrap_hf_model(model, tiny_tokenizer, name="tiny-gemma2", dtype="fp32")


@pytest.fixture(scope="module")
def whole(lm: Any, corpus_txt: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build(lm, tmp_path_factory.mktemp("whole") / "A", corpus_txt)


def test_two_builds_same_bytes(lm: Any, corpus_txt: Path, whole: Path, tmp_path: Path) -> None:
    again = build(lm, tmp_path / "B", corpus_txt)
    a, b = atlas_bytes(whole), atlas_bytes(again)
    assert a == b and len(a) == 8  # manifest, windows, documents, vocab, 3 layers, scores
    m = json.loads((whole / "atlas.json").read_text())
    assert m["complete"] and m["progress"]["tokens_seen"] > 0
    assert m["corpus"]["fingerprint"] and m["versions"]["torch"]
    assert not (whole / "checkpoint").exists()


@pytest.mark.parametrize("kill_after", [1, 6])
def test_resume_after_kill_same_bytes(
    lm: Any, corpus_txt: Path, whole: Path, tmp_path: Path, kill_after: int
) -> None:
    out = tmp_path / "A"

    def kill(b: int) -> None:
        if b == kill_after:
            raise Killed

    with pytest.raises(Killed):
        build(lm, out, corpus_txt, checkpoint_every=40, on_batch=kill)
    assert not json.loads((out / "atlas.json").read_text())["complete"]
    assert (out / "checkpoint" / "progress.json").is_file() == (kill_after > 1)
    with pytest.raises(IncompleteRunError, match="--resume"):
        open_atlas(out)
    build(lm, out, corpus_txt, checkpoint_every=40, resume=True)
    assert atlas_bytes(out) == atlas_bytes(whole)
    log = json.loads((out / "build.json").read_text())
    assert (log["resumed_at_batch"] is not None) == (kill_after > 1)


def test_merge_of_partials_same_bytes(
    lm: Any, corpus_txt: Path, whole: Path, tmp_path: Path
) -> None:
    n = json.loads((whole / "atlas.json").read_text())["params"]["n_batches"]
    assert n >= 4
    cuts = [(0, 2), (2, n - 1), (n - 1, n)]
    parts = [build(lm, tmp_path / f"p{lo}", corpus_txt, batches=(lo, hi)) for lo, hi in cuts]
    assert not json.loads((parts[0] / "atlas.json").read_text())["complete"]
    merged = merge_atlases([parts[2], parts[0], parts[1]], tmp_path / "merged")
    assert atlas_bytes(merged) == atlas_bytes(whole)
    # Associative: merging a merge gives the same bytes.
    ab = merge_atlases([parts[0], parts[1]], tmp_path / "ab")
    assert not json.loads((ab / "atlas.json").read_text())["complete"]
    assert atlas_bytes(merge_atlases([ab, parts[2]], tmp_path / "abc")) == atlas_bytes(whole)
    with pytest.raises(BadArgumentError, match="overlap"):
        merge_atlases([parts[0], ab], tmp_path / "bad")


def test_resume_refuses_other_settings(
    lm: Any, corpus_txt: Path, whole: Path, tmp_path: Path
) -> None:
    before = atlas_bytes(whole)
    with pytest.raises(BadArgumentError, match=r"params.top_k: 4 \(atlas\) vs 5 \(now\)"):
        build(lm, _incomplete_copy(whole, tmp_path), corpus_txt, top_k=5, resume=True)
    other = tmp_path / "other.txt"
    other.write_text("hello world\nfoo bar\n")
    with pytest.raises(BadArgumentError, match=r"corpus\.fingerprint"):
        build(lm, _incomplete_copy(whole, tmp_path), other, resume=True)
    with pytest.raises(RunExistsError, match=r"--resume .* --overwrite"):
        build(lm, whole, corpus_txt)
    assert atlas_bytes(whole) == before


def _incomplete_copy(src: Path, tmp: Path) -> Path:
    import shutil

    dst = tmp / f"copy{len(list(tmp.iterdir()))}"
    shutil.copytree(src, dst)
    m = json.loads((dst / "atlas.json").read_text())
    m["complete"] = False
    (dst / "atlas.json").write_text(json.dumps(m))
    return dst


def test_include_bos_counts_every_window_start(
    lm: Any, corpus_txt: Path, whole: Path, tmp_path: Path
) -> None:
    import numpy as np
    from safetensors.numpy import load_file

    from tests.atlas.reference import capture_all, reduce_layer

    a = open_atlas(whole)
    root = build(lm, tmp_path / "bos", corpus_txt, include_bos=True)
    b = open_atlas(root)
    assert b.tokens_seen == a.tokens_seen + a.manifest["windows"]["n_windows"]
    acts, m = capture_all(lm, root)
    lengths = load_file(str(root / "windows.safetensors"))["length"]
    c = m["params"]["ctx_len"]
    for layer in m["layers"]:
        ref = reduce_layer(acts[layer], lengths, m, layer)
        got = load_file(str(root / "layers" / f"layer_{layer:03d}.safetensors"))
        for name in ("hist", "top_g", "bot_g", "samp_g", "min", "max"):
            np.testing.assert_array_equal(got[name], ref[name], err_msg=name)
        assert (ref["samp_g"][ref["samp_g"] >= 0] % c == 0).any()  # BOS tokens were sampled
        plain = load_file(str(whole / "layers" / f"layer_{layer:03d}.safetensors"))
        assert not (plain["samp_g"][plain["samp_g"] >= 0] % c == 0).any()


def _kill_args(corpus: Path, out: Path, model: Path) -> list[str]:
    return [
        "atlas", "--corpus", str(corpus), "--out_dir", str(out),
        "--model_name", str(model), "--device", "cpu", "--model_dtype", "fp32",
        "--ctx_len", "12", "--top_k", "4", "--interval_samples", "3", "--batch_size", "2",
        "--checkpoint_every", "20", "--write_scores_k", "3", "--no_progress",
    ]  # fmt: skip


PAUSE_AFTER = 3  # checkpoints the child writes before it stops for good


def _paused_child(argv: list[str], part: Path, log: Path) -> tuple[subprocess.Popen, int]:
    """Start ``neuron-signatures atlas`` made to stop for good after ``PAUSE_AFTER`` checkpoints
    (``$NEURON_SIGNATURES_PAUSE_AFTER_CHECKPOINTS``); returns it, paused, and the batch its last
    checkpoint resumes at. No race with a build that finishes first, no skip."""
    from neuron_signatures.atlas.run import PAUSE_ENV

    proc = start_paused(argv, {PAUSE_ENV: str(PAUSE_AFTER)}, log)
    progress = json.loads((part / "checkpoint" / "progress.json").read_text())
    return proc, int(progress["next_batch"])


def test_kill_9_then_resume(tiny_model_dir: Path, tmp_path: Path) -> None:
    """A real ``kill -9`` after the third checkpoint; ``--resume`` starts at that checkpoint's
    batch and ends with the bytes of an uninterrupted build."""
    from neuron_signatures.cli import main
    from tests.atlas.conftest import corpus_lines

    corpus = tmp_path / "c.txt"
    corpus.write_text("\n".join(corpus_lines(16)))
    full, part = tmp_path / "full", tmp_path / "part"
    assert main(_kill_args(corpus, full, tiny_model_dir)) == 0
    n_batches = json.loads((full / "atlas.json").read_text())["params"]["n_batches"]
    proc, at = _paused_child(_kill_args(corpus, part, tiny_model_dir), part, tmp_path / "log")
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    assert PAUSE_AFTER <= at < n_batches - 1
    assert not json.loads((part / "atlas.json").read_text())["complete"]
    assert main([*_kill_args(corpus, part, tiny_model_dir), "--resume"]) == 0
    assert json.loads((part / "build.json").read_text())["resumed_at_batch"] == at
    assert atlas_bytes(part) == atlas_bytes(full)


def test_ctrl_c_says_what_is_kept(
    tiny_model_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Ctrl-C (a real SIGINT) names the checkpoint kept and the --resume command, in one line."""
    from neuron_signatures.cli import main
    from tests.atlas.conftest import corpus_lines

    corpus = tmp_path / "c.txt"
    corpus.write_text("\n".join(corpus_lines(16)))
    part, log = tmp_path / "part", tmp_path / "log"
    proc, at = _paused_child(_kill_args(corpus, part, tiny_model_dir), part, log)
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=60) == 130
    n_batches = json.loads((part / "atlas.json").read_text())["params"]["n_batches"]
    last = log.read_text().strip().splitlines()[-1]
    assert "Traceback" not in log.read_text() and "shards" not in last
    assert f"checkpoint at batch {at} of {n_batches}" in last
    assert f"neuron-signatures atlas --out_dir {part} " in last and "--resume" in last
    capsys.readouterr()
    assert main([*_kill_args(corpus, part, tiny_model_dir), "--resume"]) == 0
    assert json.loads((part / "build.json").read_text())["resumed_at_batch"] == at


def test_version_1_atlas_reads_without_shape_moments(
    lm: Any, corpus_txt: Path, whole: Path, tmp_path: Path
) -> None:
    """An atlas built before the x^3 / x^4 sums opens (NaN skewness, kurtosis, the rest equal);
    resuming it is refused with a one-line fix, and nothing in it changes."""
    from safetensors.torch import load_file, save_file

    from neuron_signatures.errors import RunFormatError

    old = _incomplete_copy(whole, tmp_path)
    m = json.loads((old / "atlas.json").read_text())
    m["format_version"], m["complete"] = 1, True
    (old / "atlas.json").write_text(json.dumps(m))
    for f in (old / "layers").iterdir():
        t = load_file(str(f))
        save_file({k: v for k, v in t.items() if k not in ("sum3", "sum4", "moments_bad")}, f)
    new, got = open_atlas(whole).neuron(1, 3), open_atlas(old).neuron(1, 3)
    assert got.stats.mean == new.stats.mean and got.stats.variance == new.stats.variance
    assert new.stats.kurtosis == new.stats.kurtosis  # finite on the current version
    assert got.stats.skewness != got.stats.skewness and got.stats.kurtosis != got.stats.kurtosis
    assert [e.value for e in got.top] == [e.value for e in new.top]
    m["complete"] = False
    (old / "atlas.json").write_text(json.dumps(m))
    before = atlas_bytes(old)
    with pytest.raises(RunFormatError, match=r"version-1 atlas .* --overwrite"):
        build(lm, old, corpus_txt, resume=True)
    assert atlas_bytes(old) == before


# -- issue 21: documents, merge targets, half-written folders -----------------------------------
def test_documents_keep_metadata_strings(
    lm: Any, corpus_txt: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """documents.jsonl holds each document's metadata as written: spaces inside strings kept,
    a line separator inside a string does not split its line."""
    from neuron_signatures.atlas import build as build_mod
    from neuron_signatures.atlas.corpus import Document

    metas = [
        {"title": "New York  Times", "tags": ["a b", " c "], "n": 1},
        {"note": "line\u2028sep\u0085 é", "x": None},
        {"index": 2},
    ]
    texts = ["hello world foo", "The capital of Texas", "bar baz"]
    docs = [Document(t, m) for t, m in zip(texts, metas, strict=True)]
    monkeypatch.setattr(build_mod, "iter_documents", lambda spec: iter(docs))
    root = build(lm, tmp_path / "A", corpus_txt)
    assert open_atlas(root).documents == metas
    lines = (root / "documents.jsonl").read_bytes().split(b"\n")
    assert lines[-1] == b"" and [json.loads(x) for x in lines[:-1]] == metas


@pytest.fixture(scope="module")
def parts(lm: Any, corpus_txt: Path, whole: Path, tmp_path_factory: pytest.TempPathFactory) -> Any:
    """Three partial atlases covering every batch of ``whole`` (read them, never change them)."""
    n = json.loads((whole / "atlas.json").read_text())["params"]["n_batches"]
    assert n >= 4
    base = tmp_path_factory.mktemp("parts")
    cuts = [(0, 2), (2, n - 1), (n - 1, n)]
    return [build(lm, base / f"p{lo}", corpus_txt, batches=(lo, hi)) for lo, hi in cuts]


def test_merge_refuses_an_output_that_is_in_or_holds_an_input(
    parts: list[Path], tmp_path: Path
) -> None:
    import shutil

    a = tmp_path / "nest" / "a"
    shutil.copytree(parts[0], a)
    (tmp_path / "link").symlink_to(a, target_is_directory=True)
    before = atlas_bytes(a)
    for out in (a, tmp_path / "link", a / "sub", tmp_path / "nest", tmp_path):
        with pytest.raises(BadArgumentError, match=r"merge output .* input"):
            merge_atlases([a, parts[1], parts[2]], out, overwrite=True)
        assert atlas_bytes(a) == before
    assert not (a / "sub").exists()
    with pytest.raises(BadArgumentError, match=r"merge output .* input"):  # via a symlinked input
        merge_atlases([tmp_path / "link", parts[1]], a / "sub")


def _leftovers(src: Path, dst: Path, *names: str) -> Path:
    """A folder as a kill left it: some of ``src``'s files (no atlas.json), a lock, a temp file."""
    import shutil

    dst.mkdir(parents=True)
    (dst / ".lock").write_text("123")
    for name in names:
        s = src / name
        shutil.copytree(s, dst / name) if s.is_dir() else shutil.copyfile(s, dst / name)
    (dst / ".atlas.json.x1y2z3.tmp").write_bytes(b"{")
    return dst


def test_overwrite_clears_a_build_killed_before_its_manifest(
    lm: Any, corpus_txt: Path, whole: Path, tmp_path: Path
) -> None:
    """A kill in the first seconds (static files, no atlas.json), a failed merge (static files and
    some layers) and a Ray build's parts/static: --overwrite replaces each, --resume and a plain
    build refuse in one line naming --overwrite; files of others are never touched."""
    states = {
        "static": ("windows.safetensors", "documents.jsonl"),
        "merge": ("windows.safetensors", "documents.jsonl", "vocab.json", "layers"),
    }
    for name, files in states.items():
        out = _leftovers(whole, tmp_path / name, *files)
        with pytest.raises(RunExistsError, match="--overwrite"):
            build(lm, out, corpus_txt, resume=True)
        with pytest.raises(RunExistsError, match="--overwrite"):
            build(lm, out, corpus_txt)
        build(lm, out, corpus_txt, overwrite=True)
        assert atlas_bytes(out) == atlas_bytes(whole), name
    ray = _leftovers(whole, tmp_path / "ray")
    (ray / "parts" / "static").mkdir(parents=True)
    (ray / "parts" / "static" / "windows.safetensors").write_bytes(b"half")
    build(lm, ray, corpus_txt, overwrite=True)
    assert atlas_bytes(ray) == atlas_bytes(whole) and not (ray / "parts").exists()
    mine = _leftovers(whole, tmp_path / "mine", "windows.safetensors")
    (mine / "notes.txt").write_text("mine")
    with pytest.raises(RunExistsError, match="holds files but no atlas"):
        build(lm, mine, corpus_txt, overwrite=True)
    assert (mine / "notes.txt").read_text() == "mine" and (mine / "windows.safetensors").is_file()


def test_failed_merge_leaves_nothing(parts: list[Path], whole: Path, tmp_path: Path) -> None:
    import shutil

    bad = tmp_path / "bad"
    shutil.copytree(parts[1], bad)
    next((bad / "layers").iterdir()).write_bytes(b"not safetensors")
    out = tmp_path / "merged"
    with pytest.raises(RunFormatError, match="layers/layer_"):
        merge_atlases([parts[0], bad, parts[2]], out)
    assert not out.exists()
    assert atlas_bytes(merge_atlases(parts, out)) == atlas_bytes(whole)


def test_resume_needs_an_atlas(lm: Any, corpus_txt: Path, tmp_path: Path) -> None:
    """--resume of a folder that does not exist (or is empty) is refused: nothing to resume."""
    for out in (tmp_path / "missing", tmp_path / "empty"):
        if out.name == "empty":
            out.mkdir()
        with pytest.raises(RunExistsError, match=r"nothing to resume.*drop --resume"):
            build(lm, out, corpus_txt, resume=True)
    assert not (tmp_path / "missing").exists()
    assert list((tmp_path / "empty").iterdir()) == []


def test_unwritable_out_dir_fails_before_the_model(
    lm: Any, corpus_txt: Path, tmp_path: Path
) -> None:
    """A folder that cannot be made or written (root ignores chmod: a path under a regular
    file, and a folder of /proc) fails with one domain error before anything loads."""
    from neuron_signatures.atlas.build import build_atlas
    from tests.atlas.conftest import config

    def load(_: Any) -> Any:
        raise AssertionError("the model was loaded")

    (tmp_path / "file.txt").write_text("x")
    bad = [tmp_path / "file.txt" / "sub", tmp_path / "file.txt" / "a" / "b"]
    if Path("/proc/self").is_dir():
        bad.append(Path("/proc/no-such-atlas-dir/a"))
    for out in bad:
        with pytest.raises(OutputNotWritableError, match=f"cannot write --out_dir {out}"):
            build_atlas(config(out, corpus_txt), load=load)
    made = tmp_path / "new" / "deeper" / "A"
    with pytest.raises(BadPromptsError):  # a later early error leaves no folder behind
        build_atlas(config(made, tmp_path / "missing.txt"), load=load)
    assert not (tmp_path / "new").exists()
