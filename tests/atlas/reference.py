"""A slow, obviously-correct atlas: capture every window's activations, then reduce in numpy."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from neuron_signatures.atlas.bins import bin_of
from neuron_signatures.atlas.priority import token_priority


def capture_all(lm: Any, root: Path, padded: bool = True) -> tuple[dict[int, np.ndarray], Any]:
    """``{layer: [W, ctx_len, d]}`` float32 for the atlas's windows (0 past each window's end).

    ``padded``: the atlas's own batches (bit-identical values); else one window at a time.
    """
    from safetensors.numpy import load_file

    from neuron_signatures.atlas.plan import window_batches
    from neuron_signatures.atlas.run import batch_inputs
    from neuron_signatures.atlas.store import read_manifest
    from neuron_signatures.models import capture_hook_post

    m = read_manifest(root)
    win = load_file(str(root / "windows.safetensors"))
    lengths, c = win["length"], m["params"]["ctx_len"]
    if padded:
        batches = window_batches(
            lengths, m["params"]["batch_size"], m["params"]["max_batch_tokens"]
        )
    else:
        batches = [[w] for w in range(len(lengths))]
    acts = {layer: np.zeros((len(lengths), c, lm.d_mlp), np.float32) for layer in m["layers"]}
    for b in batches:
        wins = np.asarray(b)
        ids, mask = batch_inputs(win["tokens"], lengths, wins, lm.tokenizer.pad_token_id)
        got = capture_hook_post(lm, ids, mask, m["layers"])
        for layer in m["layers"]:
            a = got[layer].float().numpy()
            for row, w in enumerate(wins):
                acts[layer][w, : lengths[w]] = a[row, : lengths[w]]
    return acts, m


def order_key(v: np.ndarray) -> np.ndarray:
    b = v.astype(np.float32).view(np.int32).astype(np.int64)
    return np.where(b < 0, b ^ 0x7FFFFFFF, b)


def reduce_layer(
    acts: np.ndarray, lengths: np.ndarray, m: dict[str, Any], layer: int
) -> dict[str, Any]:
    """Brute-force statistics, histogram, extremes and reservoirs of layer ``layer``."""
    p, c = m["params"], m["params"]["ctx_len"]
    pos = np.arange(c)[None, :]
    valid = (pos < lengths[:, None]) & (pos >= (0 if p["include_bos"] else 1))
    w, t = np.nonzero(valid)
    g = w * c + t
    v = acts[w, t]  # [N, d]
    h = m["statistics"]["histogram"]
    bins = bin_of(v, h["lo_exp"], h["hi_exp"])  # searchsorted on the edges, side by sign
    nb = h["n_bins"]
    x = v.astype(np.float64)
    keys = order_key(v)
    k, r, d = p["top_k"], p["interval_samples"], v.shape[1]
    out: dict[str, Any] = {
        "n": len(g),
        "mean": x.mean(0),
        "var": x.var(0),
        # population skewness and excess kurtosis, from central moments (scipy's defaults)
        "skew": ((x - x.mean(0)) ** 3).mean(0) / x.var(0) ** 1.5,
        "kurt": ((x - x.mean(0)) ** 4).mean(0) / x.var(0) ** 2 - 3.0,
        "min": v.min(0),
        "max": v.max(0),
        "n_pos": (v > 0).sum(0),
        "n_thr": (v > p["density_threshold"]).sum(0),
        "hist": np.stack([np.bincount(bins[:, n], minlength=nb) for n in range(d)]),
        "top_g": np.stack([g[np.lexsort((g, -keys[:, n]))[:k]] for n in range(d)]),
        "bot_g": np.stack([g[np.lexsort((g, keys[:, n]))[:k]] for n in range(d)]),
    }
    samp = np.full((d, nb, r), -1, np.int64)
    for n in range(d):
        prio = token_priority(g, p["seed"], layer, n)  # each neuron its own priorities
        for b in np.unique(bins[:, n]):
            members = np.flatnonzero(bins[:, n] == b)
            best = members[np.argsort(prio[members])[:r]]
            samp[n, b, : len(best)] = g[best]
    out["samp_g"] = samp
    out["g"], out["v"] = g, v
    return out
