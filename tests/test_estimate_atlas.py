"""``estimate --atlas``: the byte formulas against the atlas code and a tiny build's files."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from neuron_signatures.cli import main
from neuron_signatures.estimate import AtlasEstimate
from tests.atlas.conftest import SMALL, build, corpus_lines

HEADER_TOLERANCE = 4096  # safetensors JSON header per file, the only bytes the formula omits


@pytest.mark.parametrize(("k", "ctx", "dtype"), [(20, 64, "fp16"), (3, 9, "fp32")])
def test_per_neuron_bytes_match_reduce_state(k: int, ctx: int, dtype: str) -> None:
    import torch

    from neuron_signatures.atlas import bins
    from neuron_signatures.atlas.reduce import ReduceParams, new_state, to_disk

    d = 8
    p = ReduceParams(
        d_mlp=d, ctx_len=ctx, top_k=k, samples=4, threshold=0.1, seed=0, example_dtype=dtype
    )
    e = AtlasEstimate("x", 1, d, None, 100, ctx_len=ctx, top_k=k, samples=4, example_dtype=dtype)
    assert e.n_bins == bins.n_bins()
    st = new_state(p, "cpu")
    per_layer = sum(t.numel() * t.element_size() for n, t in st.items() if n != "n")
    assert per_layer == d * e.state_bytes_per_neuron
    disk = to_disk(st, p)
    assert sum(t.numel() * t.element_size() for n, t in disk.items() if n != "n") == (
        d * e.disk_bytes_per_neuron
    )
    assert isinstance(st["n"], torch.Tensor)


def test_estimate_matches_a_tiny_build(
    arch: str, tiny_pair: tuple[Any, Any], tmp_path: Path
) -> None:
    if arch != "gemma2":
        pytest.skip("one architecture is enough for file sizes")
    lm = tiny_pair[0]
    corpus = tmp_path / "c.txt"
    corpus.write_text("\n".join(corpus_lines(20)) + "\n")
    root = build(lm, tmp_path / "a", corpus)
    m = json.loads((root / "atlas.json").read_text())
    e = AtlasEstimate(
        "tiny",
        lm.n_layers,
        lm.d_mlp,
        None,
        m["progress"]["tokens_seen"],
        ctx_len=SMALL["ctx_len"],
        top_k=SMALL["top_k"],
        samples=SMALL["interval_samples"],
        write_scores_k=SMALL["write_scores_k"],
    )
    for f in sorted((root / "layers").iterdir()):
        size = f.stat().st_size
        assert 0 <= size - lm.d_mlp * e.disk_bytes_per_neuron <= HEADER_TOLERANCE
    n_win = m["windows"]["n_windows"]
    per_window = e.windows_bytes / e.n_windows
    assert 0 <= (root / "windows.safetensors").stat().st_size - n_win * per_window <= 1024
    scores = (root / "write_scores.safetensors").stat().st_size - e.write_scores_bytes
    assert 0 <= scores <= HEADER_TOLERANCE


def test_gemma_2_2b_estimate_prints(capsys: pytest.CaptureFixture[str]) -> None:
    rc = main(["estimate", "--atlas", "--tokens", "1e8", "--model_name", "google/gemma-2-2b"])
    out = capsys.readouterr().out
    assert rc == 0
    assert "239,616" in out and "device memory" in out and "disk:" in out
    assert "ASSUMED" in out and "H200" in out


@pytest.mark.parametrize(
    "argv",
    [
        ["--tokens", "abc"],
        ["--tokens", "0"],
        ["--tokens", "1.5"],
        ["--ctx_len", "1"],
        ["--example_dtype", "bf8"],
    ],
)
def test_bad_input_is_one_line_exit_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["estimate", "--atlas", *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
