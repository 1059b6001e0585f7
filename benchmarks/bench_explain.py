"""Offline explain + score of every neuron of an atlas, and the score-time forward against a
bare body forward over the same windows, measured in one run.

1. Load the atlas's model (not timed) and draw the random windows as ``explain`` does.
2. Forward ratio: the score-time forward (:func:`neuron_signatures.explain.forward.
   score_time_forward`: every layer's ``hook_post`` captured, the body stopped after the last
   layer) against the bare body (``plain_model.model(ids, mask)``, no hooks, no logits) over the
   same batches; rows alternate, best of ``--reps``.
3. Explain + score every neuron of every layer (:func:`neuron_signatures.explain.layer.
   explain_and_score_layer`: parameters and contexts chosen on the train split's validation
   slice, records built and serialised to JSON lines, not written), timed per layer; then the
   score distribution per layer (median, share >= 0.5, median floor), the chosen parameters,
   and an estimate for Gemma 2 2B's 239,616 neurons (d_mlp 9,216: the per-neuron cost is taken
   as constant, the held-out size being the same).

Usage: ``python benchmarks/bench_explain.py --atlas A [--layers 0-17] [--n_random_tokens 4096]
[--reps 2] [--device cpu] [--threads N]``
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from datetime import date
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402

from neuron_signatures.atlas import load_atlas_model, open_atlas  # noqa: E402
from neuron_signatures.atlas.run import batch_inputs  # noqa: E402
from neuron_signatures.explain.forward import pick_random_windows, score_time_forward  # noqa: E402
from neuron_signatures.explain.layer import explain_and_score_layer  # noqa: E402
from neuron_signatures.explain.split import read_layer, read_windows  # noqa: E402
from neuron_signatures.neurons import parse_layers  # noqa: E402

GEMMA2_2B_NEURONS = 239_616


def bare_forward(lm: Any, win: Any, wins: np.ndarray, batch_size: int) -> None:
    pad = lm.tokenizer.pad_token_id if lm.tokenizer.pad_token_id is not None else 0
    local = np.arange(len(wins))
    with torch.inference_mode():
        for lo in range(0, len(wins), batch_size):
            ids, mask = batch_inputs(
                win.tokens[wins], win.lengths[wins], local[lo : lo + batch_size], pad
            )
            lm.plain_model.model(
                input_ids=ids.to(lm.device), attention_mask=mask.to(lm.device), use_cache=False
            )


def _column(sides: list[dict[str, Any]], group: str, key: str) -> np.ndarray:
    """One score of every side as floats (NaN where null)."""
    return np.array([np.nan if x[group][key] is None else x[group][key] for x in sides], float)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--atlas", required=True)
    ap.add_argument("--layers", default=None)
    ap.add_argument("--n_random_tokens", type=int, default=4096)
    ap.add_argument("--batch_size", type=int, default=16)
    ap.add_argument("--reps", type=int, default=2)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--json_out", default=None, help="also write the numbers here")
    ap.add_argument("--forward_only", action="store_true", help="stop after the forward ratio")
    a = ap.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    atlas = open_atlas(a.atlas)
    layers = parse_layers(a.layers) or atlas.layers
    win = read_windows(atlas)
    wins = pick_random_windows(win.lengths - win.start, a.n_random_tokens, 0)
    lm = load_atlas_model(atlas, device=a.device)
    n_tok = int(sum(max(0, int(n) - win.start) for n in win.lengths[wins]))
    print(
        f"# bench_explain {date.today()} | {platform.processor() or platform.machine()} | "
        f"{os.cpu_count()} cores, torch threads {torch.get_num_threads()} | {atlas.model_name} "
        f"{lm.dtype} on {lm.device} | {len(wins)} random windows, {n_tok} scored tokens"
    )
    score_time_forward(lm, win, wins[:2], layers, a.batch_size)  # warm up
    best = {"score-time forward": float("inf"), "bare body forward": float("inf")}
    rnd = None
    for rep in range(a.reps):
        for name in list(best)[:: 1 if rep % 2 == 0 else -1]:
            t = time.perf_counter()
            if name == "bare body forward":
                bare_forward(lm, win, wins, a.batch_size)
            else:
                rnd = score_time_forward(lm, win, wins, layers, a.batch_size)
            best[name] = min(best[name], time.perf_counter() - t)
    ratio = best["score-time forward"] / best["bare body forward"]
    for name, s in best.items():
        print(f"{name:20s} {s:8.2f} s  {n_tok / s:8.0f} tok/s")
    print(f"ratio score-time / bare: {ratio:.3f}x")
    assert rnd is not None
    if a.forward_only:
        return
    del lm
    vocab = atlas.vocab
    per_layer, rows, chosen = [], [], []
    t_all = time.perf_counter()
    for layer in layers:
        t = time.perf_counter()
        recs, _, choice = explain_and_score_layer(read_layer(atlas, layer), win, rnd, vocab, 0)
        _ = "".join(json.dumps(r, ensure_ascii=False) for r in recs)
        per_layer.append(time.perf_counter() - t)
        chosen.append((layer, choice))
        for side in ("positive", "negative"):
            s = [x for r in recs for x in r["sides"] if x["side"] == side]
            tr = _column(s, "scores", "top_and_random")
            ro = _column(s, "scores", "random_only")
            fl = _column(s, "floor", "top_and_random")
            rows.append(
                (layer, side, len(s), np.nanmedian(tr), np.mean(np.nan_to_num(tr) >= 0.5),
                 np.nanmedian(ro), np.nanmedian(fl), np.mean(np.nan_to_num(fl) >= 0.5),
                 int(np.isnan(tr).sum()))
            )  # fmt: skip
    total = time.perf_counter() - t_all
    n_neurons = atlas.d_mlp * len(layers)
    print(
        f"explain + score: {n_neurons} neurons in {total:.1f} s "
        f"({1e6 * total / n_neurons:.0f} µs/neuron; per layer {min(per_layer):.2f}-"
        f"{max(per_layer):.2f} s); Gemma 2 2B's {GEMMA2_2B_NEURONS} neurons: about "
        f"{total / n_neurons * GEMMA2_2B_NEURONS / 60:.1f} min at this rate"
    )
    print(
        "layer side     n     median(top+rnd) share>=0.5 median(rnd) floor median floor>=0.5 null"
    )
    for r in rows:
        print(
            f"{r[0]:5d} {r[1]:8s} {r[2]:5d} {r[3]:15.3f} {r[4]:10.3f} {r[5]:11.3f} "
            f"{r[6]:12.3f} {r[7]:10.3f} {r[8]:5d}"
        )
    print("layer top_tokens prior validation-median (+contexts)  neurons with contexts")
    for layer, c in chosen:
        print(
            f"{layer:5d} {c.top_tokens:10d} {c.prior:5g} {c.validation_median:17.3f} "
            f"({c.validation_median_with_contexts:.3f}) {c.context_neurons:9d}"
        )
    if a.json_out:
        Path(a.json_out).write_text(
            json.dumps(
                {
                    "forward_s": best,
                    "ratio": ratio,
                    "explain_score_s": total,
                    "per_layer_s": per_layer,
                    "rows": [[float(x) if not isinstance(x, str) else x for x in r] for r in rows],
                    "chosen": {str(la): c.as_dict() for la, c in chosen},
                },
                indent=1,
            )
        )


if __name__ == "__main__":
    main()
