"""Builds: deterministic bytes, resume after a kill, merge of partials, and refused resumes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from neuron_signatures.atlas import open_atlas
from neuron_signatures.atlas.build import merge_atlases
from neuron_signatures.errors import BadArgumentError, IncompleteRunError, RunExistsError
from tests.atlas.conftest import atlas_bytes, build
from tests.tiny_models import make_models

ROOT = Path(__file__).resolve().parents[2]


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
        ref = reduce_layer(acts[layer], lengths, m)
        got = load_file(str(root / "layers" / f"layer_{layer:03d}.safetensors"))
        for name in ("hist", "top_g", "bot_g", "samp_g", "min", "max"):
            np.testing.assert_array_equal(got[name], ref[name], err_msg=name)
        assert (ref["samp_g"][ref["samp_g"] >= 0] % c == 0).any()  # BOS tokens were sampled
        plain = load_file(str(whole / "layers" / f"layer_{layer:03d}.safetensors"))
        assert not (plain["samp_g"][plain["samp_g"] >= 0] % c == 0).any()


def test_kill_9_then_resume(tiny_model_dir: Path, tmp_path: Path) -> None:
    from tests.atlas.conftest import corpus_lines

    corpus = tmp_path / "c.txt"
    corpus.write_text("\n".join(corpus_lines(16)))

    def args(out: Path) -> list[str]:
        return [
            "atlas", "--corpus", str(corpus), "--out_dir", str(out),
            "--model_name", str(tiny_model_dir), "--device", "cpu", "--model_dtype", "fp32",
            "--ctx_len", "12", "--top_k", "4", "--interval_samples", "3", "--batch_size", "2",
            "--checkpoint_every", "20", "--write_scores_k", "3", "--no_progress",
        ]  # fmt: skip

    from neuron_signatures.cli import main

    full, part = tmp_path / "full", tmp_path / "part"
    assert main(args(full)) == 0
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "neuron_signatures", *args(part)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    progress = part / "checkpoint" / "progress.json"
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline and proc.poll() is None:
        if progress.is_file() and json.loads(progress.read_text())["next_batch"] >= 3:
            break
        time.sleep(0.01)
    if proc.poll() is not None:
        pytest.skip("the build finished before it could be killed")
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert not json.loads((part / "atlas.json").read_text())["complete"]
    assert main([*args(part), "--resume"]) == 0
    assert atlas_bytes(part) == atlas_bytes(full)


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
