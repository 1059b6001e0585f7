"""Explain and score every neuron of one layer: the split, the lookup tables, the scores and the
floors, turned into one record per neuron (the rows of ``layer_NNN.jsonl``, see :mod:`.output`).

1. Train tokens of the layer (:func:`.split.train_tokens`), one lookup table per side
   (:func:`.lookup.explain_layer`). A side is explained where the neuron goes that way (max > 0
   for positive, min < 0 for negative) and its table is not empty.
2. Held-out data per side (:func:`.split.held_out`), checked disjoint from the train tokens.
3. Scores per side on the side's scale (negated activations for the negative side):
   top-and-random and random-only (:func:`.scoring.pooled_pearson`), and the same with the
   explanation of a deranged neuron (the floor), in chunks of neurons (memory ``chunk × T``).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from .forward import RandomTokens
from .lookup import SHOWN, SIDES, LookupTable, explain_layer, render, simulate, token_means
from .scoring import derangement, pooled_pearson
from .split import HeldOut, LayerArrays, Windows, check_disjoint, held_out, train_tokens

CHUNK = 512  # neurons scored at once
N_PROMOTES = 5  # write-score tokens kept per side

SCORES = ("top_and_random", "random_only")


def score_side(
    table: LookupTable,
    ho: HeldOut,
    acts: np.ndarray,
    rnd_token: np.ndarray,
    sign: float,
    other: np.ndarray,
) -> dict[str, np.ndarray]:
    """Scores, floors and held-out token counts ``[d]`` of one side (module doc, step 3).

    ``acts [T, d]`` are the random tokens' activations; ``other [d]`` the floor's neurons.
    """
    d = table.ids.shape[0]
    out = {k: np.full(d, np.nan) for k in (*SCORES, *(f"floor_{s}" for s in SCORES))}
    out["n_top_and_random"] = np.zeros(d, np.int64)
    out["n_random_only"] = np.zeros(d, np.int64)
    for lo in range(0, d, CHUNK):
        sl = slice(lo, min(d, lo + CHUNK))
        c = sl.stop - lo
        x_r = sign * acts[:, sl].T.astype(np.float64)
        x_e = sign * ho.ex_value[sl].reshape(c, -1)
        tok_e = ho.ex_token[sl].reshape(c, -1)
        ok_r, ok_e = ho.rnd_ok[sl], ho.ex_ok[sl].reshape(c, -1)
        x, ok = np.concatenate([x_e, x_r], 1), np.concatenate([ok_e, ok_r], 1)
        out["n_top_and_random"][sl] = ok.sum(1)
        out["n_random_only"][sl] = ok_r.sum(1)
        for prefix, rows in (("", np.arange(lo, sl.stop)), ("floor_", other[sl])):
            t = table.take(np.maximum(rows, 0))
            y_r, y_e = simulate(t, rnd_token), simulate(t, tok_e)
            valid = rows >= 0
            both = pooled_pearson(x, np.concatenate([y_e, y_r], 1), ok)
            rand = pooled_pearson(x_r, y_r, ok_r)
            out[f"{prefix}top_and_random"][sl] = np.where(valid, both, np.nan)
            out[f"{prefix}random_only"][sl] = np.where(valid, rand, np.nan)
    return out


def blank_records(arr: LayerArrays) -> list[dict[str, Any]]:
    """One record per neuron of the layer, its sides still to fill (both explainers start here)."""
    return [
        {
            "layer": arr.layer,
            "neuron": i,
            "min": float(arr.min[i]),
            "max": float(arr.max[i]),
            "sides": [],
        }
        for i in range(arr.d)
    ]


def _num(x: float) -> float | None:
    return None if math.isnan(x) else x


def explain_and_score_layer(
    arr: LayerArrays,
    win: Windows,
    rnd: RandomTokens,
    vocab: list[str],
    seed: int,
    k: int = 32,
    prior: float = 3.0,
    check: bool = True,
) -> tuple[list[dict[str, Any]], dict[str, LookupTable]]:
    """One record per neuron of ``arr`` (module doc) and each side's full lookup table (rows of
    neurons not explained on that side emptied); deterministic for the same inputs.

    A record names the table's first :data:`.lookup.SHOWN` tokens; the whole table (the
    simulator) is the second value, saved beside the records (:func:`.output.write_layer`).
    """
    d, layer = arr.d, arr.layer
    train = train_tokens(arr, win)
    groups = token_means(train)
    acts = rnd.layer_acts(layer)
    records = blank_records(arr)

    def tok(i: int) -> str:
        return vocab[i] if 0 <= i < len(vocab) else f"<{i}>"

    tables: dict[str, LookupTable] = {}
    for side in SIDES:
        sign = 1.0 if side == "positive" else -1.0
        table = explain_layer(groups, d, side, k, prior)
        goes = arr.max > 0 if side == "positive" else arr.min < 0
        has = table.has & goes
        table.ids[~has], table.means[~has], table.counts[~has] = -1, 0.0, 0
        tables[side] = table
        ho = held_out(arr, win, rnd.wins, rnd.g, side)
        if check:
            check_disjoint(train, ho, rnd.g)
        other = derangement(has, seed, layer, side)
        sc = score_side(table, ho, acts, rnd.token, sign, other)
        promote_ids = (arr.write_pos_id if side == "positive" else arr.write_neg_id)[:, :N_PROMOTES]
        ids, means, counts = table.ids.tolist(), table.means.tolist(), table.counts.tolist()
        cols = {key: v.tolist() for key, v in sc.items()}
        ex_w, excl = ho.ex_windows, ho.rnd_excluded
        for i in np.flatnonzero(has).tolist():
            n_all = sum(1 for t in ids[i] if t >= 0)
            n = min(n_all, SHOWN)
            names = [tok(t) for t in ids[i][:n]]
            prom = [int(t) for t in promote_ids[i]]
            m = [sign * v for v in means[i][:n]]
            records[i]["sides"].append(
                {
                    "side": side,
                    "explainer": "token-lookup",
                    "explanation": render(
                        side, names, means[i][:n], counts[i][:n], [tok(t) for t in prom]
                    ),
                    "tokens": [
                        {"id": t, "token": s, "mean": v, "count": c}
                        for t, s, v, c in zip(ids[i][:n], names, m, counts[i][:n], strict=True)
                    ],
                    "table_size": n_all,
                    "output": {
                        "source": "atlas write scores",
                        "promotes": [{"id": t, "token": tok(t)} for t in prom],
                    },
                    "scores": {s: _num(cols[s][i]) for s in SCORES},
                    "floor": {
                        "from_neuron": int(other[i]) if other[i] >= 0 else None,
                        **{s: _num(cols[f"floor_{s}"][i]) for s in SCORES},
                    },
                    "heldout": {
                        "example_windows": [int(w) for w in ex_w[i] if w >= 0],
                        "random_windows_excluded": rnd.wins[excl[i]].tolist(),
                        "tokens_top_and_random": cols["n_top_and_random"][i],
                        "tokens_random_only": cols["n_random_only"][i],
                    },
                }
            )
    return records, tables
