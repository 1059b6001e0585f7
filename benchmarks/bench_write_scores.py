"""Write scores against the plain matmul of the same shapes, and the cache, measured in one run.

One process, the same ``W_U``, directions, chunks, device and thread count for every row; the
rows alternate (their order rotating each repetition) and each reports its best of ``--reps``,
per layer of ``d_mlp`` neurons:

* (a) plain matmul: ``torch.matmul(dirs.T, W_U[chunk].T)`` over every vocabulary chunk
  (``VOCAB_CHUNK`` rows), the result dropped: the floor, 1.00x;
* (b) the previous selection (:func:`neuron_signatures.atlas.scores.torch_extremes`, also the
  GPU path): the same matmuls, then ``topk`` largest and smallest per chunk and a ``cat`` +
  ``topk`` + ``gather`` merge per side;
* (c) the current selection (:func:`neuron_signatures.atlas.scores.layer_extremes`): the same
  matmuls into one buffer, then the compiled top/bottom pass (:mod:`.extremes_kernel`);
* GFLOP/s = ``2 · d_mlp · d_model · vocab`` / seconds; "vs (a)" = (a)'s time / the row's time.

Then, once: (b) and (c) compared (ids and values bit for bit), the weight fingerprint
(sha256 of ``W_U``, the key of the cache), and ``--cache_layers`` layers through
:func:`neuron_signatures.atlas.score_cache.cached_write_scores` into a temporary cache: first
call (computed and written) and second call (read back).

``--model random`` (default) is a stand-in of Gemma 3 270M's shapes (vocab 262,144, d_model 640,
d_mlp 2,048, 18 layers) with random weights and needs no model; ``--model gemma3-270m`` (or any
model spec) loads the real weights (10-60 s, not timed).

Usage: ``python benchmarks/bench_write_scores.py [--model random|gemma3-270m] [--reps 2]
[--layer 0] [--cache_layers 2] [--threads N]``
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import date
from pathlib import Path
from types import SimpleNamespace
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402

from neuron_signatures.atlas import score_cache  # noqa: E402
from neuron_signatures.atlas.scores import (  # noqa: E402
    VOCAB_CHUNK,
    layer_extremes,
    torch_extremes,
)
from neuron_signatures.attribution.write_scores import write_directions  # noqa: E402

SHAPES = {"vocab": 262144, "d_model": 640, "d_mlp": 2048, "n_layers": 18}


def random_weights(seed: int = 0) -> tuple[Any, Any]:
    """A stand-in ``(Weights, lm)`` of Gemma 3 270M's shapes (scaled like trained weights)."""
    g = torch.Generator().manual_seed(seed)
    v, d, m, n = (SHAPES[x] for x in ("vocab", "d_model", "d_mlp", "n_layers"))
    w = SimpleNamespace(
        w_u=torch.randn(v, d, generator=g) * 0.03,
        w_out=[torch.randn(d, m, generator=g) * 0.02 for _ in range(n)],
        g_post_mlp=1.0 + 0.1 * torch.randn(n, d, generator=g),
        g_final=1.0 + 0.1 * torch.randn(d, generator=g),
    )
    lm = SimpleNamespace(name="random stand-in", d_mlp=m, n_layers=n)
    return w, lm


def real_weights(name: str) -> tuple[Any, Any]:
    from neuron_signatures.attribution.trace import model_weights
    from neuron_signatures.models import load_model

    lm = load_model(name, device="cpu", dtype="fp32")
    return model_weights(lm), lm


def plain_matmul(w_u: Any, dirs: Any) -> None:
    dt = dirs.T.contiguous()
    for lo in range(0, w_u.shape[0], VOCAB_CHUNK):
        torch.matmul(dt, w_u[lo : lo + VOCAB_CHUNK].T)


def timed(fn: Callable[[], Any]) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def cache_rows(w: Any, lm: Any, layers: list[int], k: int) -> list[tuple[str, float]]:
    """Seconds of a first (computing) and a second (reading) cached call, and the fingerprint."""
    from unittest import mock

    from neuron_signatures.attribution import trace

    rows = [("fingerprint of W_U (sha256)", timed(lambda: score_cache.tensor_digest(w.w_u)))]
    with (
        tempfile.TemporaryDirectory() as tmp,
        mock.patch.dict(os.environ, {score_cache.CACHE_ENV: tmp}),
        mock.patch.object(trace, "model_weights", lambda _: w),
    ):
        first = timed(lambda: score_cache.cached_write_scores(lm, layers, k))
        second = timed(lambda: score_cache.cached_write_scores(lm, layers, k))
    rows += [
        (f"cache, first call ({len(layers)} layers computed)", first),
        (f"cache, second call ({len(layers)} layers read)", second),
    ]
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--model", default="random", help="random, or a model spec (gemma3-270m)")
    ap.add_argument("--layer", type=int, default=0, help="the layer whose directions are timed")
    ap.add_argument("--k", type=int, default=10, help="write_scores_k (the atlas default: 10)")
    ap.add_argument("--reps", type=int, default=2)
    ap.add_argument("--cache_layers", type=int, default=2, help="0: skip the cache rows")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    w, lm = random_weights() if args.model == "random" else real_weights(args.model)
    dirs = write_directions(w, [(args.layer, n) for n in range(lm.d_mlp)])
    vocab, d_model = w.w_u.shape
    flop = 2.0 * lm.d_mlp * d_model * vocab
    rows: dict[str, Callable[[], Any]] = {
        "(a) plain torch.matmul, same chunks": lambda: plain_matmul(w.w_u, dirs),
        "(b) previous: topk x2 + merge": lambda: torch_extremes(w.w_u, dirs, args.k),
        "(c) current: compiled top/bottom": lambda: layer_extremes(w.w_u, dirs, args.k),
    }
    layer_extremes(w.w_u[:VOCAB_CHUNK], dirs, args.k)  # compile (numba cache) outside the timing
    best = {name: float("inf") for name in rows}
    names = list(rows)
    for rep in range(args.reps):
        for name in names[rep % len(names) :] + names[: rep % len(names)]:
            best[name] = min(best[name], timed(rows[name]))
    same = all(
        torch.equal(x, y)
        for x, y in zip(
            torch_extremes(w.w_u, dirs, args.k), layer_extremes(w.w_u, dirs, args.k), strict=True
        )
    )
    print(
        f"write scores, {lm.name}: vocab {vocab}, d_model {d_model}, d_mlp {lm.d_mlp}, "
        f"k {args.k}, chunk {VOCAB_CHUNK}, layer {args.layer}, cpu, {torch.get_num_threads()} "
        f"threads, best of {args.reps}; {date.today()}, {platform.processor() or 'cpu'}, "
        f"{os.cpu_count()} cores, torch {torch.__version__}"
    )
    base = best[names[0]]
    print(f"{'row (one layer)':<38} {'seconds':>8} {'GFLOP/s':>8} {'vs (a)':>7}")
    for name, s in best.items():
        print(f"{name:<38} {s:>8.2f} {flop / s / 1e9:>8.1f} {base / s:>6.2f}x")
    print(f"(b) and (c) equal bit for bit (ids and values): {same}")
    n = lm.n_layers
    print(
        f"per atlas of all {n} layers: (b) {best[names[1]] * n / 60:.1f} min, "
        f"(c) {best[names[2]] * n / 60:.1f} min, matmul floor {base * n / 60:.1f} min"
    )
    if args.cache_layers:
        layers = list(range(min(args.cache_layers, n)))
        for name, s in cache_rows(w, lm, layers, args.k):
            print(f"{name:<46} {s:>8.2f} s")


if __name__ == "__main__":
    main()
