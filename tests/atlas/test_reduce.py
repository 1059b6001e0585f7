"""The reduction against a brute-force computation over a full capture of the same windows."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from safetensors.numpy import load_file

from neuron_signatures.atlas import open_atlas
from neuron_signatures.atlas.bins import bin_of
from neuron_signatures.atlas.ranking import (
    batch_extremes,
    key_value,
    merge_ranked,
    order_key,
    reservoir_insert,
)
from tests.atlas.conftest import build
from tests.atlas.reference import capture_all, reduce_layer


def test_order_key_is_float_order() -> None:
    x = torch.tensor([-3.5, -1e-30, -0.0, 0.0, 1e-30, 2.0, float("inf"), -float("inf")])
    k = order_key(x)
    assert torch.equal(torch.argsort(k), torch.tensor([7, 0, 1, 2, 3, 4, 5, 6]))
    assert torch.equal(key_value(k).view(torch.int32), x.view(torch.int32))


def test_ties_are_broken_by_token_order() -> None:
    # Three tokens tie at 1.0 for neuron 0: the earliest ones win, whatever topk does.
    x = torch.tensor([[0.5], [1.0], [1.0], [0.2], [1.0]])
    _, local = batch_extremes(order_key(x), 2, largest=True)
    assert local.tolist() == [[1, 2]]
    _, local = batch_extremes(order_key(-x), 2, largest=False)
    assert local.tolist() == [[1, 2]]
    empty = torch.zeros(1, 2, 1)
    a = (order_key(torch.tensor([[1.0, 0.1]])), torch.tensor([[9, 3]]), empty)
    b = (order_key(torch.tensor([[1.0, 1.0]])), torch.tensor([[4, 12]]), empty)
    _, g, _ = merge_ranked(a, b, 3, largest=True)
    assert g.tolist() == [[4, 9, 12]]
    _, g2, _ = merge_ranked(b, a, 3, largest=True)
    assert torch.equal(g, g2)


def test_reservoir_keeps_lowest_priorities() -> None:
    res = {
        "h": torch.full((2, 2), 2**63 - 1),
        "g": torch.full((2, 2), -1),
        "v": torch.zeros(2, 2),
    }
    group = torch.tensor([0, 0, 0, 1, 0])
    prio = torch.tensor([50, 10, 30, 7, 20])
    g = torch.tensor([100, 101, 102, 103, 104])
    o = torch.argsort(prio)  # candidates come in ascending priority
    reservoir_insert(res, group[o], prio[o], g[o], g[o].float())
    assert res["g"].tolist() == [[101, 104], [103, -1]]
    reservoir_insert(
        res,
        torch.tensor([0, 1]),
        torch.tensor([15, 99]),
        torch.tensor([7, 8]),
        torch.tensor([7.0, 8.0]),
    )
    assert res["g"].tolist() == [[101, 7], [103, 8]]


@pytest.fixture(scope="module")
def atlas_and_ref(
    tiny_pair: tuple[Any, Any], corpus_txt: Path, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, dict[int, np.ndarray], dict[str, Any], Any]:
    lm = tiny_pair[0]
    root = build(lm, tmp_path_factory.mktemp("atlas") / "A", corpus_txt)
    acts, m = capture_all(lm, root)
    return root, acts, m, lm


def test_equals_brute_force(atlas_and_ref: Any) -> None:
    root, acts, m, _ = atlas_and_ref
    lengths = load_file(str(root / "windows.safetensors"))["length"]
    for layer in m["layers"]:
        ref = reduce_layer(acts[layer], lengths, m, layer)
        got = load_file(str(root / "layers" / f"layer_{layer:03d}.safetensors"))
        assert int(got["n"][0]) == ref["n"]
        for name in ("n_pos", "n_thr", "hist", "top_g", "bot_g", "samp_g", "min", "max"):
            np.testing.assert_array_equal(got[name], ref[name], err_msg=name)
        assert (got["n_thr"] > 0).any() and (got["n_thr"] < got["n_pos"]).any()
        atlas = open_atlas(root)
        stats = atlas.layer_stats(layer)
        np.testing.assert_allclose(stats["mean"], ref["mean"], rtol=1e-9, atol=1e-15)
        np.testing.assert_allclose(stats["std"] ** 2, ref["var"], rtol=1e-7, atol=1e-15)
        # Example values and whole-window activations equal the capture.
        c = m["params"]["ctx_len"]
        for side in ("top", "bot"):
            g = got[f"{side}_g"]
            w, pos = g // c, g % c
            n_idx = np.arange(g.shape[0])[:, None]
            np.testing.assert_array_equal(got[f"{side}_val"], acts[layer][w, pos, n_idx])
            windows = acts[layer][w].transpose(0, 1, 3, 2)[n_idx[:, 0], :, n_idx[:, 0]]
            np.testing.assert_allclose(got[f"{side}_acts"], windows, rtol=1e-3, atol=1e-6)
        # Reservoir values are the tokens' activations.
        sg, sv = got["samp_g"], got["samp_v"]
        n_idx = np.broadcast_to(np.arange(sg.shape[0])[:, None, None], sg.shape)
        ok = sg >= 0
        np.testing.assert_array_equal(sv[ok], acts[layer][sg[ok] // c, sg[ok] % c, n_idx[ok]])


def test_unpadded_capture_agrees(atlas_and_ref: Any) -> None:
    root, acts, _, lm = atlas_and_ref
    single, _ = capture_all(lm, root, padded=False)
    for layer, a in acts.items():
        np.testing.assert_allclose(a, single[layer], rtol=1e-4, atol=1e-6)


def test_reader_neuron(atlas_and_ref: Any) -> None:
    root, acts, m, _ = atlas_and_ref
    atlas = open_atlas(root)
    layer = m["layers"][-1]
    lengths = load_file(str(root / "windows.safetensors"))["length"]
    ref = reduce_layer(acts[layer], lengths, m, layer)
    h = m["statistics"]["histogram"]
    for n in (0, 5, 63):
        rec = atlas.neuron(layer, n)
        assert rec.stats.count == ref["n"]
        assert rec.stats.mean == pytest.approx(ref["mean"][n], rel=1e-9, abs=1e-15)
        assert rec.stats.variance == pytest.approx(ref["var"][n], rel=1e-7, abs=1e-15)
        assert rec.stats.skewness == pytest.approx(ref["skew"][n], rel=1e-6, abs=1e-9)
        assert rec.stats.kurtosis == pytest.approx(ref["kurt"][n], rel=1e-6, abs=1e-9)
        assert [e.value for e in rec.top] == sorted((e.value for e in rec.top), reverse=True)
        top = rec.top[0]
        assert top.value == pytest.approx(float(ref["max"][n]))
        assert top.acts[top.position] == pytest.approx(top.value, rel=1e-3)
        assert top.tokens[0] == "<bos>" and len(top.tokens) == len(top.acts)
        assert rec.bottom[0].value == pytest.approx(float(ref["min"][n]))
        # Intervals: counts that add up and are near equal in the sense the cut gives: each
        # interval holds fewer than n / 10 tokens besides its last bin (whole bins only).
        assert sum(iv.count for iv in rec.intervals) == ref["n"]
        assert 5 <= len(rec.intervals) <= 10
        edges = np.asarray(h["edges"])
        for iv in rec.intervals:
            last = int(np.searchsorted(edges, min(iv.hi, edges[-1]), side="left"))
            if iv.hi > edges[-1]:
                last = len(edges)
            assert iv.count - int(rec.histogram_counts[last]) < ref["n"] / 10
        # and each sample is inside its interval's bins.
        for iv in rec.intervals:
            assert 0 < len(iv.samples) <= m["params"]["interval_samples"]
            for s in iv.samples:
                assert iv.lo <= s.value <= iv.hi
                b = bin_of(np.float32([s.value]), h["lo_exp"], h["hi_exp"])[0]
                assert s.window * m["params"]["ctx_len"] + s.position in ref["samp_g"][n, b]
            assert "% of tokens" in iv.label
        assert len(rec.write_top) == 5 and rec.write_top[0].score >= rec.write_top[-1].score


def test_intervals_are_near_equal_as_cut() -> None:
    """The cut rule on hand-built counts: besides its last bin, an interval holds fewer than
    total / n tokens; one dominant bin makes its interval large (counts are not equal)."""
    from neuron_signatures.atlas.record import equal_count_intervals

    counts = np.array([0, 5, 3, 0, 91, 1, 0, 0, 2, 7, 0])
    got = equal_count_intervals(counts, 4)
    assert got == [(1, 4), (5, 9)]
    total = counts.sum()
    for a, b in got:
        assert counts[a : b + 1].sum() - counts[b] < total / 4
    flat = np.full(40, 25)
    sizes = [int(flat[a : b + 1].sum()) for a, b in equal_count_intervals(flat, 10)]
    assert sizes == [100] * 10  # equal when the bins allow it


def test_layer_extremes_equal_vocab_extremes() -> None:
    from neuron_signatures.atlas.scores import layer_extremes
    from neuron_signatures.attribution.write_scores import vocab_extremes

    torch.manual_seed(0)
    w_u, dirs = torch.randn(300, 16), torch.randn(16, 7)
    a = vocab_extremes(w_u, dirs, 5, chunk=64)
    b = layer_extremes(w_u, dirs, 5, chunk=64)
    for x, y in zip(a, b, strict=True):
        torch.testing.assert_close(x, y)  # ids equal; logits to float rounding


def test_fixed_point_sums_are_exact_and_associative() -> None:
    from fractions import Fraction

    from neuron_signatures.atlas.exact import fixed_digits, normalize
    from neuron_signatures.atlas.reader import fixed_value

    torch.manual_seed(0)
    v = torch.randn(40, 3, dtype=torch.float64) * 10.0 ** torch.randint(-12, 12, (40, 3))
    v[0, 0] = 3.4e38**2  # far beyond the old clamp of 2^62
    parts = [fixed_digits(row, 13, 128) for row in v]
    zero = torch.zeros(3, 13, dtype=torch.int64)
    forward = zero
    for d in parts:
        forward = normalize(forward + d)
    backward = zero
    for d in reversed(parts):
        backward = normalize(backward + d)
    halves = normalize(normalize(sum(parts[:13], zero)) + normalize(sum(parts[13:], zero)))
    assert torch.equal(forward, backward) and torch.equal(forward, halves)
    for n in range(3):
        exact = sum(int(Fraction(float(x)) * 2**128) for x in v[:, n])
        assert fixed_value(forward[n].numpy()) == exact
