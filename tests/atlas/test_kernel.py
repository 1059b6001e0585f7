"""The compiled CPU pass (:mod:`neuron_signatures.atlas.kernel`) against the torch reduction."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from neuron_signatures.atlas.reader import exact_total
from neuron_signatures.atlas.reduce import (
    SUMS,
    ReduceParams,
    batch_tokens,
    kernel_available,
    new_state,
    update,
    update_kernel,
)
from neuron_signatures.atlas.run import reducer
from tests.atlas.conftest import build

pytestmark = pytest.mark.skipif(not kernel_available(), reason="numba is not installed")


def _batches(seed: int, n_batches: int, d: int, ctx: int) -> list[tuple[np.ndarray, ...]]:
    """Windows of ragged lengths whose activations hold ties, signed zeros, inf and NaN."""
    rng = np.random.default_rng(seed)
    out, w0 = [], 0
    for _ in range(n_batches):
        b = int(rng.integers(1, 6))
        wins = np.arange(w0, w0 + b)
        w0 += b + int(rng.integers(0, 3))  # gaps: other parts' windows
        lengths = rng.integers(1, ctx + 1, b)
        acts = rng.standard_normal((b, int(lengths.max()), d)).astype(np.float32)
        acts = np.round(acts * 4) / 4  # many exact ties
        pick = rng.random(acts.shape)
        acts[pick < 0.03] = 0.0
        acts[(pick > 0.03) & (pick < 0.05)] = -0.0
        acts[(pick > 0.05) & (pick < 0.052)] = np.inf
        acts[(pick > 0.052) & (pick < 0.054)] = -np.inf
        acts[..., 1] = 0.1  # a constant neuron (every token ties)
        out.append((wins, lengths, acts))
    return out


def _assert_same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for name in a:
        x, y = a[name], b[name]
        if name in SUMS:  # exact totals of float64 sums added in another order
            k = SUMS.index(name) + 1
            for i in range(x.shape[0]):
                u = exact_total({name: x[i].numpy()}, k)
                v = exact_total({name: y[i].numpy()}, k)
                assert abs(u - v) <= 1e-12 * max(abs(u), abs(v), 1), name
        elif x.is_floating_point():  # bit patterns: -0.0, NaN and inf included
            x = x.float() if x.dtype == torch.float16 else x
            y = y.float() if y.dtype == torch.float16 else y
            assert torch.equal(x.view(torch.int32), y.view(torch.int32)), name
        else:
            assert torch.equal(x, y), name


@pytest.mark.parametrize("include_bos", [False, True])
@pytest.mark.parametrize("threads", [1, 2, 3])
@pytest.mark.parametrize("int16_cells", [True, False])
@pytest.mark.parametrize("tile", [2, 128])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_kernel_equals_torch_ops(
    include_bos: bool,
    threads: int,
    int16_cells: bool,
    tile: int,
    dtype: torch.dtype,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Same states; a bf16 batch is read as its raw bits (see ``raw_bits``), not cast."""
    from neuron_signatures.atlas import kernel

    if not int16_cells:  # the int32 table of batches of >= 2^15 tokens
        monkeypatch.setattr(kernel, "SMALL_BATCH", 0)
    monkeypatch.setattr(kernel, "TILE", tile)  # 2: four tiles of 7 neurons, split over threads
    d, ctx = 7, 6
    p = ReduceParams(d_mlp=d, ctx_len=ctx, top_k=4, samples=3, threshold=0.1, seed=5)
    a, b = new_state(p, "cpu"), new_state(p, "cpu")
    before = torch.get_num_threads()
    try:
        for wins, lengths, acts in _batches(0, 12, d, ctx):
            bt = batch_tokens(wins, lengths, ctx, include_bos, p.seed, "cpu")
            x = torch.from_numpy(acts).to(dtype)  # bf16 keeps -0.0, inf, NaN and most ties
            torch.set_num_threads(1)
            update(a, p, x, bt)
            torch.set_num_threads(threads)  # the kernel splits neurons over this many threads
            update_kernel(b, p, x, bt)
    finally:
        torch.set_num_threads(before)
    _assert_same(a, b)
    assert int(a["n"][0]) > 0
    assert bool((a["top_g"] >= 0).all())  # lists filled and then contested


def test_kernel_nan_propagates_from_earlier_batches() -> None:
    p = ReduceParams(d_mlp=2, ctx_len=3, top_k=2, samples=2, threshold=0.0, seed=0)
    a, b = new_state(p, "cpu"), new_state(p, "cpu")
    first = np.array([[[0.0, 1.0], [np.nan, 2.0], [1.0, 3.0]]], dtype=np.float32)
    second = np.array([[[0.0, 1.0], [5.0, -2.0], [-1.0, 0.5]]], dtype=np.float32)
    for i, acts in enumerate((first, second)):
        bt = batch_tokens(np.array([i]), np.array([3]), 3, False, p.seed, "cpu")
        update(a, p, torch.from_numpy(acts), bt)
        update_kernel(b, p, torch.from_numpy(acts), bt)
    _assert_same(a, b)
    assert torch.isnan(b["min"][0]) and torch.isnan(b["max"][0])
    assert b["min"][1] == -2.0 and b["max"][1] == 3.0


def test_block_affine_equals_the_table() -> None:
    from neuron_signatures.atlas import bins

    blocks = (np.arange(-512, 512) << bins.SHIFT).astype(np.int32)
    for exp in [(-14, 10), (-3, 2), (-20, 20), (-126, 127), (0, 1)]:
        off, s = bins.block_affine(*exp)
        slot = np.clip(((blocks >> 22) & 511) - off, 0, s - 1)
        assert np.array_equal(s + (slot ^ (blocks >> 31)), bins.block_table(*exp)), exp


def test_signed_zero_extremes_agree() -> None:
    """min and max follow the lists' key order (-0.0 < +0.0) in both reducers and in merge."""
    from neuron_signatures.atlas.reduce import merge

    p = ReduceParams(d_mlp=2, ctx_len=5, top_k=2, samples=2, threshold=0.0, seed=0)
    first = np.array([[[0.0, 1.0], [0.0, 2.0], [-0.0, 3.0], [0.0, 1.0], [0.0, 1.0]]], np.float32)
    second = np.array([[[-0.0, 1.0], [0.0, -2.0], [0.0, 0.5], [0.0, 0.5], [-0.0, 0.5]]], np.float32)
    a, b = new_state(p, "cpu"), new_state(p, "cpu")
    halves = []
    for i, acts in enumerate((first, second)):
        bt = batch_tokens(np.array([i]), np.array([5]), 5, True, p.seed, "cpu")
        update(a, p, torch.from_numpy(acts), bt)
        update_kernel(b, p, torch.from_numpy(acts), bt)
        halves.append(new_state(p, "cpu"))
        update(halves[-1], p, torch.from_numpy(acts), bt)
    _assert_same(a, b)
    _assert_same(a, merge(halves[1], halves[0], p))
    assert str(a["min"][0].item()) == "-0.0" and str(a["max"][0].item()) == "0.0"


def test_layers_folded_at_once_equal_one_at_a_time() -> None:
    """The CPU batch loop folds layers on parallel threads: same states as one by one."""
    from neuron_signatures.atlas.run import fold_layers

    d, ctx = 9, 6
    p = ReduceParams(d_mlp=d, ctx_len=ctx, top_k=3, samples=2, threshold=0.1, seed=3)
    together = {n: new_state(p, "cpu") for n in range(3)}
    apart = {n: new_state(p, "cpu") for n in range(3)}
    before = torch.get_num_threads()
    try:
        for wins, lengths, acts in _batches(1, 6, d, ctx):
            bt = batch_tokens(wins, lengths, ctx, False, p.seed, "cpu")
            got = {n: torch.from_numpy(acts * (n + 1)) for n in range(3)}
            torch.set_num_threads(2)
            fold_layers("cpu", update_kernel, together, p, got, bt)
            assert torch.get_num_threads() == 2  # restored
            for n in range(3):
                update_kernel(apart[n], p, got[n], bt, threads=1)
    finally:
        torch.set_num_threads(before)
    for n in range(3):
        for name in together[n]:
            assert torch.equal(together[n][name], apart[n][name]), name


def test_reducer_choice(monkeypatch: pytest.MonkeyPatch) -> None:
    assert reducer("cpu") is update_kernel
    assert reducer("cuda") is update
    monkeypatch.setenv("NEURON_SIGNATURES_NO_KERNEL", "1")
    assert reducer("cpu") is update


def test_whole_build_torch_ops_equal_kernel(
    tiny_pair: tuple[Any, Any], corpus_txt: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two builds of one corpus, one per reducer: the layer files agree (sums to rounding)."""
    lm = tiny_pair[0]
    fast = build(lm, tmp_path / "kernel", corpus_txt)
    monkeypatch.setenv("NEURON_SIGNATURES_NO_KERNEL", "1")
    slow = build(lm, tmp_path / "torch", corpus_txt)
    assert json.loads((fast / "build.json").read_text())["reducer"] == "numba kernel"
    assert json.loads((slow / "build.json").read_text())["reducer"] == "torch ops"
    for layer in json.loads((fast / "atlas.json").read_text())["layers"]:
        name = f"layers/layer_{layer:03d}.safetensors"
        a, b = load_file(str(fast / name)), load_file(str(slow / name))
        _assert_same(a, b)


def test_power_sums_pass_equals_torch_digits() -> None:
    """The compiled digits-and-carry of a batch's sums: the same int64 digits as ``add_sums``."""
    from neuron_signatures.atlas import kernel
    from neuron_signatures.atlas.exact import LAYOUT, pivot
    from neuron_signatures.atlas.reduce import add_sums

    rng = np.random.default_rng(7)
    d = 257
    p = ReduceParams(d_mlp=d, ctx_len=4, top_k=2, samples=2, threshold=0.0, seed=0)
    st = new_state(p, "cpu")
    bits = np.array([LAYOUT[k][1] for k in (1, 2, 3, 4)])
    for trial in range(12):
        first = rng.standard_normal(d).astype(np.float32) * 10.0 ** rng.integers(-8, 8, d)
        c = pivot(first) if trial % 3 else np.zeros(d)
        sums = rng.standard_normal((5, d)) * 10.0 ** rng.integers(-30, 30, (5, d))
        sums[0] = rng.integers(0, 5000, d)
        sums[1:, :5] = np.array([[-0.0], [5e-324], [-1e-300], [0.0]])  # zeros, a subnormal
        expected = {name: st[name].clone() for name in SUMS}
        add_sums(expected, torch.from_numpy(c), [torch.from_numpy(s) for s in sums])
        kernel.add_power_sums(c, sums, *(st[name].numpy() for name in SUMS), bits)
        for name in SUMS:
            assert torch.equal(st[name], expected[name]), (trial, name)
    assert all(bool(st[name].any()) for name in SUMS)  # carried totals, not zeros


def test_follow_moves_rows_in_place() -> None:
    """Rows of a top-k list follow their entries down in place, as through a scratch copy."""
    from neuron_signatures.atlas import kernel

    rng = np.random.default_rng(3)
    d, k = 40, 6
    src = np.empty((d, k), np.int64)
    for m in range(d):  # new entries take some slots; the kept ones fill the rest in order
        new = rng.choice(k, int(rng.integers(0, k + 1)) if m % 5 else 0, replace=False)
        src[m] = -1
        rest = np.setdiff1d(np.arange(k), new)
        src[m, rest] = np.arange(rest.size)
    assert np.all((src <= np.arange(k)) | (src < 0))
    win = rng.integers(0, 2**16, (d, k, 3)).astype(np.uint16)
    expected = win.copy()
    for m in range(d):
        for j in range(k):
            if src[m, j] >= 0:
                expected[m, j] = win[m, src[m, j]]
    kernel._follow(0, d, src, win)
    assert np.array_equal(win, expected)


@pytest.mark.parametrize("dtype", ["fp32", "bf16"])
def test_warm_kernel_loads_what_a_batch_uses(dtype: str) -> None:
    """A fresh process warms the compiled pass for its model's dtype; a real batch then finds
    every specialisation it needs already loaded (no load or compile left for the first batch)."""
    import subprocess
    import sys

    code = """
import numpy as np, torch
from neuron_signatures.atlas import kernel
from neuron_signatures.atlas.reduce import ReduceParams, batch_tokens, new_state, update_kernel
from neuron_signatures.atlas.reduce import warm_kernel
fns = (kernel._tiles, kernel.put_windows, kernel.add_power_sums)
assert all(not f.signatures for f in fns)
warm_kernel(DTYPE).join()
warm = [list(f.signatures) for f in fns]
p = ReduceParams(d_mlp=700, ctx_len=8, top_k=5, samples=3, threshold=0.1, seed=1)
acts = torch.randn(6, 8, 700).to(torch.bfloat16 if DTYPE == "bf16" else torch.float32)
bt = batch_tokens(np.arange(6), np.array([8, 3, 8, 5, 8, 1]), 8, True, p.seed, "cpu")
st = new_state(p, "cpu")
update_kernel(st, p, acts, bt, threads=2)
update_kernel(st, p, acts * 2, bt, threads=1)
assert [list(f.signatures) for f in fns] == warm, "a batch needed another specialisation"
assert all(len(w) == 1 for w in warm)
print("ok")
"""
    code = code.replace("DTYPE", repr(dtype))
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "ok"
