"""Statistics of the reduction against brute force: non-finite values, moments far from zero,
and the interval samples' independence across neurons and proportionality."""

from __future__ import annotations

from collections.abc import Callable
from fractions import Fraction
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
import torch

from neuron_signatures.atlas.reader import Atlas, _exact_stats
from neuron_signatures.atlas.reduce import (
    ReduceParams,
    batch_tokens,
    kernel_available,
    merge,
    new_state,
    to_disk,
    update,
    update_kernel,
)

FOLDS: list[Callable[..., None]] = [update]
if kernel_available():
    FOLDS.append(update_kernel)
LAYER = 4


def _fold(
    fold: Callable[..., None], p: ReduceParams, batches: list[np.ndarray], first_window: int = 0
) -> dict[str, torch.Tensor]:
    """A layer state of ``batches`` (each ``[B, T, d]``, full-length windows, BOS counted)."""
    st = new_state(p, "cpu", LAYER)
    w0 = first_window
    for acts in batches:
        b, t = acts.shape[:2]
        bt = batch_tokens(np.arange(w0, w0 + b), np.full(b, t), p.ctx_len, True, p.seed, "cpu")
        fold(st, p, torch.from_numpy(np.ascontiguousarray(acts, np.float32)), bt)
        w0 += b
    return st


def _same(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Equal bytes (NaN included)."""
    if a.is_floating_point():
        a, b = a.float().view(torch.int32), b.float().view(torch.int32)
    return torch.equal(a, b)


def _stats(st: dict[str, torch.Tensor], p: ReduceParams, neuron: int) -> Any:
    disk = to_disk(st, p)
    row = {k: v[neuron].numpy() for k, v in disk.items() if k != "n"}
    return _exact_stats(row, int(disk["n"][0]), p.threshold)


def _params(d: int, ctx: int = 8, samples: int = 4, seed: int = 0) -> ReduceParams:
    return ReduceParams(d_mlp=d, ctx_len=ctx, top_k=2, samples=samples, threshold=0.5, seed=seed)


# -- item: a NaN or inf makes every moment NaN and is counted ---------------------------------
@pytest.mark.parametrize("fold", FOLDS, ids=lambda f: f.__name__)
@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_a_non_finite_value_makes_moments_nan_and_is_counted(
    fold: Callable[..., None], bad: float
) -> None:
    p = _params(2)
    one = np.ones((1, 8, 2), np.float32)
    two = one.copy()
    two[0, 3, 0] = bad  # neuron 0: one bad value among 16; neuron 1: all 1.0
    st = _fold(fold, p, [one, two])
    s = _stats(st, p, 0)
    assert s.nonfinite == 1 and s.count == 16
    for name in ("mean", "variance", "std", "skewness", "kurtosis"):
        assert np.isnan(getattr(s, name)), name  # was mean 0.5 (NaN) or 2.9e17 (inf)
    clean = _stats(st, p, 1)
    assert clean.nonfinite == 0 and clean.mean == 1.0 and clean.variance == 0.0
    # merge keeps the count, in either order
    a, b = _fold(fold, p, [one]), _fold(fold, p, [two], first_window=1)
    for m in (merge(a, b, p), merge(b, a, p)):
        assert int(m["n_nonfinite"][0]) == 1 and int(m["n_nonfinite"][1]) == 0
        assert np.isnan(_stats(m, p, 0).mean)
        for name in st:
            assert _same(m[name], st[name]), name


# -- item: exact moments far from zero, wide and tiny --------------------------------------------
def _brute(x: np.ndarray) -> tuple[float, float, float, float]:
    """Mean, variance, skewness, excess kurtosis of float32 values, in exact rationals."""
    v = [Fraction(float(t)) for t in x]
    n = len(v)
    mu = sum(v, Fraction(0)) / n
    m2, m3, m4 = (sum(((t - mu) ** k for t in v), Fraction(0)) / n for k in (2, 3, 4))
    return float(mu), float(m2), float(m3 / m2) / float(m2) ** 0.5, float(m4 / (m2 * m2)) - 3


DISTRIBUTIONS = {
    "offset": lambda r, n: 1000 + 0.1 * r.standard_normal(n),
    "far_offset": lambda r, n: -3e4 + 0.5 * r.standard_normal(n),
    "wide": lambda r, n: r.standard_normal(n) * 10.0 ** r.uniform(-6, 4, n),
    "tiny": lambda r, n: 1e-7 + 1e-9 * r.standard_normal(n),
    "skewed": lambda r, n: 50 + r.exponential(size=n),
}


@pytest.mark.parametrize("fold", FOLDS, ids=lambda f: f.__name__)
def test_moments_equal_exact_brute_force(fold: Callable[..., None]) -> None:
    rng = np.random.default_rng(7)
    d, ctx = len(DISTRIBUTIONS), 64
    x = np.stack([f(rng, 3 * 5 * ctx) for f in DISTRIBUTIONS.values()], 1).astype(np.float32)
    batches = list(x.reshape(3, 5, ctx, d))  # three batches of five windows
    p = _params(d, ctx)
    whole = _fold(fold, p, batches)
    parts = merge(_fold(fold, p, batches[:1]), _fold(fold, p, batches[1:], first_window=5), p)
    for name in whole:
        assert _same(whole[name], parts[name]), name  # merge stays byte-exact
    for n, kind in enumerate(DISTRIBUTIONS):
        want = _brute(x[:, n])
        got = _stats(whole, p, n)
        assert got.nonfinite == 0
        assert got.mean == pytest.approx(want[0], rel=1e-12), kind
        assert got.variance == pytest.approx(want[1], rel=1e-9), kind
        # the float64 sums of x^3, x^4 gave kurtosis +0.14 (torch -7.9) on the offset neuron
        assert got.skewness == pytest.approx(want[2], rel=1e-7, abs=1e-9), kind
        assert got.kurtosis == pytest.approx(want[3], rel=1e-7, abs=1e-9), kind


def test_torch_and_kernel_moments_agree_on_huge_values() -> None:
    """No range limit: values near float32's largest keep finite, exact moments."""
    if not kernel_available():
        pytest.skip("numba is not installed")
    x = np.array([[3e38, -3e38, 1e38, 2.5e38, 0.0, 1.0, -2e37, 3e38]], np.float32)[..., None]
    p = _params(1)
    for fold in FOLDS:
        s = _stats(_fold(fold, p, [x]), p, 0)
        want = _brute(x.reshape(-1))
        assert s.mean == pytest.approx(want[0], rel=1e-12)
        assert s.kurtosis == pytest.approx(want[3], rel=1e-9)


# -- item: interval samples independent across neurons, random sample proportional ---------------
def _reservoirs(fold: Callable[..., None], x: np.ndarray, samples: int) -> Any:
    """State of one batch per 256 windows of ``x [W, ctx, d]`` and its params."""
    p = _params(x.shape[2], x.shape[1], samples, seed=3)
    return _fold(fold, p, list(x.reshape(-1, 256, *x.shape[1:]))), p


@pytest.mark.parametrize("fold", FOLDS, ids=lambda f: f.__name__)
def test_neurons_sample_independently(fold: Callable[..., None]) -> None:
    """Neurons with identical activations: one shared hash made them share every sample; salted,
    the overlap is what independent draws give (sum over bins of r^2 / count)."""
    rng = np.random.default_rng(0)
    d, r = 40, 6
    col = rng.choice([0.3, 0.7, 3.0], size=(2048, 8, 1), p=[0.6, 0.3, 0.1]).astype(np.float32)
    st, p = _reservoirs(fold, np.repeat(col, d, axis=2), r)
    g = to_disk(st, p)["samp_g"].numpy()  # [d, bins, r]
    counts = to_disk(st, p)["hist"].numpy()[0]
    expected = sum(r * r / c for c in counts if c)  # mean overlap of two neurons' samples
    overlaps = [
        len(set(g[a][g[a] >= 0]) & set(g[b][g[b] >= 0])) for a in range(d) for b in range(a)
    ]
    total = int((g[0] >= 0).sum())
    assert total == 3 * r
    mean = float(np.mean(overlaps))
    assert mean < 0.2 * total  # shared priorities gave overlap == total
    assert abs(mean - expected) < 0.05 + 4 * np.sqrt(expected / len(overlaps)), (mean, expected)
    # each neuron's sample of a bin is uniform over the bin's tokens: positions are uniform
    pos = (g[g >= 0] % p.ctx_len).ravel()
    hist = np.bincount(pos, minlength=p.ctx_len)
    chi2 = float(((hist - hist.mean()) ** 2 / hist.mean()).sum())
    assert chi2 < 24.3  # chi-square, 7 degrees of freedom, p = 0.001


@pytest.mark.parametrize("fold", FOLDS, ids=lambda f: f.__name__)
def test_random_sample_is_proportional_to_counts(fold: Callable[..., None]) -> None:
    """The atlas's ``random_sample`` (bottom-r of every reservoir) follows the counts: 90% of the
    tokens in one bin, 10% in another; a stratified draw gave them half each."""
    rng = np.random.default_rng(1)
    d, r = 200, 5
    x = np.where(rng.random((2048, 8, d)) < 0.9, 0.3, 3.0).astype(np.float32)
    st, p = _reservoirs(fold, x, r)
    disk = to_disk(st, p)
    fake = SimpleNamespace(salted=True, seed=p.seed)
    low = 0
    for n in range(d):
        row = {k: v[n].numpy() for k, v in disk.items() if k in ("samp_g", "samp_v")}
        g, v = Atlas._lowest(fake, row, 0, p.n_bins - 1, LAYER, n)  # type: ignore[arg-type]
        assert len(g) == r and len(set(g.tolist())) == r
        low += int((v == np.float32(0.3)).sum())
    share, want = low / (d * r), float((x == np.float32(0.3)).mean())
    assert abs(share - want) < 4 * np.sqrt(want * (1 - want) / (d * r)), (share, want)
