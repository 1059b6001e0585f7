"""Write scores of every neuron of an atlas: the top and bottom logits of its write direction.

1. Each neuron's write direction is :func:`neuron_signatures.attribution.write_scores.
   write_directions` (the ``W_out`` column with the post-MLP and final norm gains applied).
2. A layer's directions ``[d_mlp, d_model]`` multiply vocabulary chunks of ``W_U`` into
   ``[d_mlp, chunk]`` logits (neuron-major: the selection runs along contiguous rows, and no
   ``[n, vocab]`` index matrix is built). The chunk's buffer is allocated once per layer.
3. On a CPU the top and bottom ``k`` of each row are kept by one compiled pass per chunk
   (:mod:`.extremes_kernel`: running lists, no merge; 4x faster than two ``topk`` and a merge per
   chunk); elsewhere, or where a logit could be NaN, by ``torch.topk`` and a merge
   (:func:`torch_extremes`). Both give the same values and ids; among equal logits the kernel
   keeps the lowest token ids (``topk``'s choice among ties is unspecified).
4. The matmul is the same call on the same shapes in both, so the values are bit-identical to
   the logits of ``W_U @ dirs``; the time is the matmul's (``benchmarks/bench_write_scores.py``).

Scores depend on the weights only: :mod:`.score_cache` computes each layer once per model.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

VOCAB_CHUNK = 16384
F32_MAX = 3.4028234663852886e38


def torch_extremes(
    w_u: Any,
    dirs: Any,
    k: int,
    chunk: int = VOCAB_CHUNK,
    on_chunk: Callable[[], None] | None = None,
) -> tuple[Any, ...]:
    """``(pos_val, pos_id, neg_val, neg_id)``, each ``[n, k]``, of ``W_U @ dirs [d_model, n]``,
    by ``torch.topk`` per chunk merged into running lists (any device)."""
    import torch

    k = min(k, w_u.shape[0])
    dt = dirs.T.contiguous()
    best: list[Any] = []
    sides: list[Any]
    for lo in range(0, w_u.shape[0], chunk):
        s = dt @ w_u[lo : lo + chunk].to(dt.dtype).T  # [n, chunk]
        sides = []
        for largest in (True, False):
            v, i = s.topk(min(k, s.shape[1]), dim=1, largest=largest)
            i = i + lo
            if best:
                pv, pi = best[len(sides)], best[len(sides) + 1]
                v, j = torch.cat([pv, v], 1).topk(min(k, lo + s.shape[1]), 1, largest=largest)
                i = torch.cat([pi, i], 1).gather(1, j)
            sides += [v, i]
        best = sides
        if on_chunk:
            on_chunk()
    return tuple(best)


def value_span(t: Any) -> tuple[float, float]:
    """``(min, max)`` of a tensor in one pass without a temporary (NaN if it holds one)."""
    import torch

    lo, hi = torch.aminmax(t)
    return float(lo), float(hi)


def kernel_safe(w_u_span: tuple[float, float], dirs: Any) -> bool:
    """Whether no logit of ``W_U @ dirs`` can be NaN: every weight finite and
    ``d_model · max|W_U| · max|dirs|`` below float32's largest value, so no product or partial
    sum overflows (NaN needs a NaN input or ``inf - inf``). ``w_u_span``: ``W_U``'s (min, max)."""
    import torch

    lo, hi = torch.aminmax(dirs)
    ends = [*w_u_span, float(lo), float(hi)]
    if not all(math.isfinite(x) for x in ends):
        return False
    bound = max(abs(ends[0]), abs(ends[1])) * max(abs(ends[2]), abs(ends[3]))
    return bound * dirs.shape[0] < F32_MAX


def use_kernel(device: Any) -> bool:
    """True on a CPU where the compiled pass imports (``NEURON_SIGNATURES_NO_KERNEL=1``: never)."""
    from .reduce import kernel_available

    return str(device).startswith("cpu") and kernel_available()


def layer_extremes(
    w_u: Any,
    dirs: Any,
    k: int,
    chunk: int = VOCAB_CHUNK,
    on_chunk: Callable[[], None] | None = None,
    w_u_span: tuple[float, float] | None = None,
) -> tuple[Any, ...]:
    """``(pos_val, pos_id, neg_val, neg_id)``, each ``[n, k]``, of ``W_U @ dirs [d_model, n]``.

    Args:
        w_u: ``[vocab, d_model]`` unembedding (any float dtype; cast per chunk).
        dirs: ``[d_model, n]`` float32 write directions on ``w_u``'s device.
        k: entries per side (at most the vocabulary).
        chunk: vocabulary rows per matmul.
        on_chunk: called after each chunk (a progress bar).
        w_u_span: ``W_U``'s (min, max) if known (saves a pass over it per layer).
    """
    import torch

    if not use_kernel(w_u.device):
        return torch_extremes(w_u, dirs, k, chunk, on_chunk)
    if w_u_span is None:
        w_u_span = value_span(w_u)
    if not kernel_safe(w_u_span, dirs):
        return torch_extremes(w_u, dirs, k, chunk, on_chunk)
    from .extremes_kernel import fold_chunk

    vocab, n = w_u.shape[0], dirs.shape[1]
    k = min(k, vocab)
    dt = dirs.T.contiguous()
    lists = (
        torch.full((n, k), -math.inf),
        torch.zeros((n, k), dtype=torch.int64),
        torch.full((n, k), math.inf),
        torch.zeros((n, k), dtype=torch.int64),
    )
    arrays = tuple(t.numpy() for t in lists)
    flat = torch.empty(n * min(chunk, vocab), dtype=dt.dtype)
    for lo in range(0, vocab, chunk):
        part = w_u[lo : lo + chunk]
        s = flat[: n * part.shape[0]].view(n, part.shape[0])
        torch.matmul(dt, part.to(dt.dtype).T, out=s)  # the call torch_extremes makes: same bits
        fold_chunk(s.numpy(), lo, arrays, torch.get_num_threads())
        if on_chunk:
            on_chunk()
    return lists


def compute_layer(
    weights: Any,
    layer: int,
    d_mlp: int,
    k: int,
    on_chunk: Callable[[], None] | None = None,
    w_u_span: tuple[float, float] | None = None,
) -> dict[str, Any]:
    """One layer's ``{"pos_val" [d_mlp, k] f32, "pos_id" i64, "neg_val", "neg_id"}`` (CPU)."""
    import torch

    from ..attribution.write_scores import write_directions

    with torch.no_grad():
        dirs = write_directions(weights, [(layer, n) for n in range(d_mlp)])
        dirs = dirs.to(weights.w_u.device)
        got = layer_extremes(weights.w_u, dirs, k, on_chunk=on_chunk, w_u_span=w_u_span)
    out = {}
    for name, t in zip(("pos_val", "pos_id", "neg_val", "neg_id"), got, strict=True):
        t = t.cpu()
        out[name] = (t.float() if name.endswith("val") else t.to(torch.int64)).contiguous()
    return out
