"""Write scores' selection: the compiled pass against ``torch.topk`` and a stable brute force."""

from __future__ import annotations

import math

import pytest
import torch

from neuron_signatures.atlas.scores import kernel_safe, layer_extremes, torch_extremes


def stable_extremes(
    w_u: torch.Tensor, dirs: torch.Tensor, k: int, chunk: int
) -> tuple[torch.Tensor, ...]:
    """Brute force: every logit (the same chunked matmuls, so the same bits), a stable sort per
    side (ties: lowest token id first)."""
    dt = dirs.T.contiguous()
    s = torch.cat([dt @ w_u[lo : lo + chunk].T for lo in range(0, w_u.shape[0], chunk)], 1)
    k = min(k, w_u.shape[0])
    pv, pi = s.sort(dim=1, descending=True, stable=True)
    nv, ni = s.sort(dim=1, stable=True)
    return pv[:, :k], pi[:, :k], nv[:, :k], ni[:, :k]


def assert_same(a: tuple[torch.Tensor, ...], b: tuple[torch.Tensor, ...]) -> None:
    for x, y in zip(a, b, strict=True):
        assert x.dtype == y.dtype and x.shape == y.shape
        assert torch.equal(x, y)  # bit for bit: same matmul, same selection


@pytest.mark.parametrize(
    ("vocab", "k", "chunk"),
    [(300, 5, 64), (1000, 10, 1000), (257, 1, 16), (50, 7, 3), (40, 40, 16), (12, 30, 5)],
)
def test_kernel_equals_torch_topk_bit_for_bit(vocab: int, k: int, chunk: int) -> None:
    torch.manual_seed(vocab + k)
    w_u, dirs = torch.randn(vocab, 16), torch.randn(16, 9)
    calls: list[int] = []
    got = layer_extremes(w_u, dirs, k, chunk=chunk, on_chunk=lambda: calls.append(1))
    assert_same(got, torch_extremes(w_u, dirs, k, chunk=chunk))
    assert_same(got, stable_extremes(w_u, dirs, k, chunk))
    assert len(calls) == math.ceil(vocab / chunk)


def test_ties_keep_the_lowest_token_ids() -> None:
    """Duplicate ``W_U`` rows (unused tokens often share one embedding) tie exactly."""
    torch.manual_seed(0)
    base = torch.randn(6, 8)
    w_u = base[torch.randint(0, 6, (200,))]  # 200 tokens, 6 distinct rows: ties everywhere
    dirs = torch.randn(8, 5)
    got = layer_extremes(w_u, dirs, 12, chunk=32)
    assert_same(got, stable_extremes(w_u, dirs, 12, 32))
    for row in range(5):  # within equal values the ids ascend, across chunks too
        v, i = got[0][row], got[1][row]
        for a in range(11):
            assert v[a] > v[a + 1] or (v[a] == v[a + 1] and i[a] < i[a + 1])


def test_kernel_result_does_not_depend_on_threads() -> None:
    torch.manual_seed(1)
    w_u, dirs = torch.randn(500, 12), torch.randn(12, 33)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = layer_extremes(w_u, dirs, 6, chunk=128)
        torch.set_num_threads(3)
        three = layer_extremes(w_u, dirs, 6, chunk=128)
    finally:
        torch.set_num_threads(threads)
    assert_same(one, three)


def test_bf16_unembedding_is_cast_per_chunk_like_before() -> None:
    torch.manual_seed(2)
    w_u, dirs = torch.randn(300, 16).to(torch.bfloat16), torch.randn(16, 4)
    assert_same(layer_extremes(w_u, dirs, 5, chunk=64), torch_extremes(w_u, dirs, 5, chunk=64))


def test_logits_that_could_be_nan_take_the_topk_path() -> None:
    torch.manual_seed(3)
    w_u, dirs = torch.randn(100, 8), torch.randn(8, 3)
    w_u[17, 2] = float("nan")
    span = (float(w_u.nan_to_num().min()), float("nan"))
    assert not kernel_safe(span, dirs)
    assert not kernel_safe((-1.0, 1e30), dirs * 1e10)  # 8 * 1e30 * 1e10 overflows
    assert kernel_safe((-1.0, 1.0), dirs)
    got = layer_extremes(w_u, dirs, 4, chunk=32)
    ref = torch_extremes(w_u, dirs, 4, chunk=32)
    for x, y in zip(got, ref, strict=True):
        assert torch.equal(x.nan_to_num(), y.nan_to_num())
    assert torch.isnan(got[0]).any()  # topk's rule: NaN ranks first


def test_no_kernel_env_uses_topk(monkeypatch: pytest.MonkeyPatch) -> None:
    import neuron_signatures.atlas.scores as scores

    monkeypatch.setenv("NEURON_SIGNATURES_NO_KERNEL", "1")
    assert not scores.use_kernel("cpu")
    monkeypatch.delenv("NEURON_SIGNATURES_NO_KERNEL")
    assert scores.use_kernel("cpu") and not scores.use_kernel("cuda:0")
