"""Explain and score every neuron of one layer: the split, the lookup tables, the scores and the
floors, turned into one record per neuron (the rows of ``layer_NNN.jsonl``, see :mod:`.output`).

1. Train tokens of the layer (:func:`.split.train_tokens`). A side is explained where the
   neuron goes that way (max > 0 for positive, min < 0 for negative) and its table is not empty.
2. Parameters on the validation slice of the train split (:func:`choose`, never on held-out
   data): fit the lookup tables on the fit fold for every ``(top_tokens, prior)`` of a fixed
   grid, score each on the validation fold (Pearson's r per neuron, as the held-out scorer) and
   keep the pair with the highest median over both sides' neurons (ties: the first in grid
   order). Then, with that pair, add contexts (:func:`.lookup.add_contexts`) and keep them for
   the neurons whose validation score they raise (by more than :data:`CONTEXT_MIN_GAIN`).
3. Refit on the whole train split with the chosen parameters; contexts only for the neurons
   chosen in step 2.
4. Held-out data per side (:func:`.split.held_out`), checked disjoint from the train tokens.
5. Scores per side on the side's scale (negated activations for the negative side):
   top-and-random and random-only (:func:`.scoring.pooled_pearson`), and the same with the
   explanation of a deranged neuron (the floor: its table and contexts through the same
   simulator), in chunks of neurons (memory ``chunk × T``).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from .forward import RandomTokens
from .lookup import (
    SHOWN,
    SIDES,
    LookupTable,
    add_contexts,
    backoff,
    bigram_means,
    explain_layer,
    group_ranks,
    predict,
    render,
    simulate,
    table_from_ranks,
    token_means,
)
from .scoring import CentredX, derangement, segment_pearson
from .split import (
    RESERVOIR,
    HeldOut,
    LayerArrays,
    TrainTokens,
    Windows,
    check_disjoint,
    held_out,
    prev_tokens,
    train_tokens,
    validation,
)

CHUNK = 512  # neurons scored at once
N_PROMOTES = 5  # write-score tokens kept per side

SCORES = ("top_and_random", "random_only")

GRID_TOP_TOKENS = (8, 16, 32, 64)
GRID_PRIOR = (0.0, 1.0, 3.0, 10.0)
CONTEXTS = 16  # contexts kept per neuron (at most)
CONTEXT_MIN_COUNT = 2  # a bigram's train occurrences before it may be a context
# validation r a neuron's contexts must add to be kept (any gain: on three layers of the demo
# atlas a margin of 0.01 kept a third as many neurons' contexts and lowered the held-out median)
CONTEXT_MIN_GAIN = 0.0


@dataclass(frozen=True)
class Choice:
    """The parameters chosen for a layer on its validation slice (module doc, step 2), and the
    validation medians that chose them (NaN: no neuron with a defined score)."""

    top_tokens: int
    prior: float
    validation_median: float
    context_neurons: int  # neurons (both sides counted) that keep their contexts
    validation_median_with_contexts: float

    def as_dict(self) -> dict[str, Any]:
        return {k: _num(v) if isinstance(v, float) else v for k, v in asdict(self).items()}


def _goes(arr: LayerArrays, side: str) -> np.ndarray:
    return arr.max > 0 if side == "positive" else arr.min < 0


def _median(v: np.ndarray) -> float:
    v = v[np.isfinite(v)]
    return float(np.median(v)) if len(v) else float("nan")


def choose(
    train: TrainTokens,
    arr: LayerArrays,
    n_random: int,
    top_tokens: tuple[int, ...] = GRID_TOP_TOKENS,
    priors: tuple[float, ...] = GRID_PRIOR,
) -> tuple[Choice, dict[str, np.ndarray]]:
    """Step 2 of the module doc: the chosen parameters and, per side, ``[d]`` which neurons keep
    their contexts. Uses only the train split (its fit and validation folds).

    The validation tokens mirror the held-out mix: the validation examples (weight 1) and the
    reservoir tokens weighted by the tokens they stand for
    (:func:`.split.reservoir_weights`), scaled to ``n_random / 2`` per neuron (half the
    held-out examples, so half the random tokens).
    """
    d = arr.d
    fit = train.subset(train.fold == 0)
    groups = token_means(fit)
    v_key = int(max(train.token.max(initial=0), 0)) + 1
    g_keys = groups.neuron * v_key + groups.token  # sorted (np.unique)
    scores: dict[tuple[int, float], list[np.ndarray]] = {}
    val, ranks = {}, {}
    for side in SIDES:
        v = train.subset(validation(train, side))
        w = _validation_weights(v, d, n_random)
        val[side] = (v, w)
        gi = np.full(len(v.token), -1, np.int64)
        if len(g_keys):  # the validation token's group in the fit fold (-1: unseen there)
            at = np.searchsorted(g_keys, v.neuron * v_key + v.token).clip(0, len(g_keys) - 1)
            gi = np.where(g_keys[at] == v.neuron * v_key + v.token, at, -1)
        for prior in priors:
            ranks[side, prior] = group_ranks(groups, side, prior)
            r = _grid_pearson(v, w, gi, groups, ranks[side, prior], side, top_tokens, d)
            rows = _explained(groups, ranks[side, prior], arr, side)
            for j, k in enumerate(top_tokens):
                scores.setdefault((k, prior), []).append(r[rows, j])
    best: tuple[float, int, float] | None = None
    for prior in priors:
        for k in top_tokens:
            med = _median(np.concatenate(scores[k, prior]))
            if best is None or (np.isfinite(med) and med > best[0]):
                best = (med if np.isfinite(med) else -np.inf, k, prior)
    assert best is not None
    _, k, prior = best
    bigrams = bigram_means(fit)
    keep, before, after = {}, [], []
    for side in SIDES:
        sign = 1.0 if side == "positive" else -1.0
        table = table_from_ranks(groups, ranks[side, prior], d, side, k)
        table.clear(~(table.has & _goes(arr, side)))
        v, w = val[side]
        with_ctx = add_contexts(table, bigrams, side, CONTEXTS, CONTEXT_MIN_COUNT)
        x = sign * v.value
        s0 = segment_pearson(v.neuron, x, predict(table, v.neuron, v.token, v.prev), d, w)
        s1 = segment_pearson(v.neuron, x, predict(with_ctx, v.neuron, v.token, v.prev), d, w)
        gain = np.nan_to_num(s1) - np.nan_to_num(s0)
        keep[side] = with_ctx.has_contexts & (gain > CONTEXT_MIN_GAIN)
        before.append(s0[table.has])
        after.append(np.where(keep[side], s1, s0)[table.has])
    choice = Choice(
        top_tokens=k,
        prior=prior,
        validation_median=_median(np.concatenate(before)),
        context_neurons=int(sum(int(m.sum()) for m in keep.values())),
        validation_median_with_contexts=_median(np.concatenate(after)),
    )
    return choice, keep


def _explained(groups: Any, rank: np.ndarray, arr: LayerArrays, side: str) -> np.ndarray:
    """``[d]``: neurons with a table on ``side`` (a positive-mean token) that go that way."""
    has = np.zeros(arr.d, bool)
    has[groups.neuron[rank == 0]] = True
    return has & _goes(arr, side)


def _validation_weights(v: TrainTokens, d: int, n_random: int) -> np.ndarray:
    """Example tokens 1; reservoir tokens scaled to ``n_random / 2`` per neuron (see
    :func:`choose`)."""
    res = v.src == RESERVOIR
    tot = np.bincount(v.neuron[res], weights=v.weight[res], minlength=d)
    scale = np.where(tot > 0, 0.5 * n_random / np.where(tot > 0, tot, 1.0), 0.0)
    return np.where(res, v.weight * scale[v.neuron], 1.0)


def _grid_pearson(
    v: TrainTokens,
    w: np.ndarray,
    gi: np.ndarray,
    groups: Any,
    rank: np.ndarray,
    side: str,
    top_tokens: tuple[int, ...],
    d: int,
) -> np.ndarray:
    """``[d, len(top_tokens)]`` weighted Pearson's r on the validation tokens ``v`` of the
    tables of every size in ``top_tokens`` at once: a table of size ``k`` predicts a token's
    mean where its rank is below ``k``, so the sums over the predictions are cumulative in
    ``k`` (``x`` is centred first, the two-pass form's guard against cancellation)."""
    sign = 1.0 if side == "positive" else -1.0
    x = sign * v.value
    n = np.bincount(v.neuron, weights=w, minlength=d)
    with np.errstate(invalid="ignore", divide="ignore"):
        xc = x - (np.bincount(v.neuron, weights=w * x, minlength=d) / n)[v.neuron]
    sxx = np.bincount(v.neuron, weights=w * xc * xc, minlength=d)
    if len(rank) == 0:  # nothing in the fit fold: every table is empty
        gi = np.full(len(gi), -1, np.int64)
        rank, mean = np.full(1, -1, np.int64), np.zeros(1)
    else:
        mean = groups.mean
    r = np.where(gi >= 0, rank[gi.clip(0)], -1)
    m = sign * mean[gi.clip(0)]
    ks = np.asarray(sorted(top_tokens))
    bucket = np.searchsorted(ks, r, side="right")  # the smallest k with r < k
    on = (r >= 0) & (bucket < len(ks))
    cell = v.neuron[on] * len(ks) + bucket[on]
    nb = d * len(ks)
    wm = w[on] * m[on]
    sy = np.bincount(cell, weights=wm, minlength=nb).reshape(d, -1).cumsum(1)
    syy = np.bincount(cell, weights=wm * m[on], minlength=nb).reshape(d, -1).cumsum(1)
    sxy = np.bincount(cell, weights=wm * xc[on], minlength=nb).reshape(d, -1).cumsum(1)
    with np.errstate(invalid="ignore", divide="ignore"):
        vy = syy - sy * sy / n[:, None]
        den = np.sqrt(sxx[:, None] * np.where(vy > 1e-12 * syy, vy, 0.0))
        out = np.where(den > 0, sxy / np.where(den > 0, den, 1.0), np.nan)
    order = np.searchsorted(ks, np.asarray(top_tokens))
    return out[:, order]


def fit_tables(
    train: TrainTokens, arr: LayerArrays, choice: Choice, keep: dict[str, np.ndarray]
) -> dict[str, LookupTable]:
    """Step 3 of the module doc: each side's table from the whole train split, rows of neurons
    not explained on that side emptied, contexts only where ``keep``."""
    groups, bigrams = token_means(train), bigram_means(train)
    tables = {}
    for side in SIDES:
        table = explain_layer(groups, arr.d, side, choice.top_tokens, choice.prior)
        table.clear(~(table.has & _goes(arr, side)))
        table = add_contexts(table, bigrams, side, CONTEXTS, CONTEXT_MIN_COUNT)
        table.clear(~keep[side], contexts_only=True)
        tables[side] = table.rounded()
    return tables


def score_side(
    table: LookupTable,
    ho: HeldOut,
    acts: np.ndarray,
    rnd_token: np.ndarray,
    sign: float,
    other: np.ndarray,
    rnd_prev: np.ndarray | None = None,
    ex_prev: np.ndarray | None = None,
) -> dict[str, np.ndarray]:
    """Scores, floors and held-out token counts ``[d]`` of one side (module doc, step 5).

    ``acts [T, d]`` are the random tokens' activations; ``other [d]`` the floor's neurons;
    ``rnd_prev [T]`` and ``ex_prev`` (shaped as ``ho.ex_token``) the previous tokens (-1 for
    none; needed for contexts).
    """
    if rnd_prev is None:
        rnd_prev = np.full(rnd_token.shape, -1, np.int64)
    if ex_prev is None:
        ex_prev = np.full(ho.ex_token.shape, -1, np.int64)
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
        prev_e = ex_prev[sl].reshape(c, -1)
        ok_r, ok_e = ho.rnd_ok[sl], ho.ex_ok[sl].reshape(c, -1)
        x, ok = np.concatenate([x_e, x_r], 1), np.concatenate([ok_e, ok_r], 1)
        out["n_top_and_random"][sl] = ok.sum(1)
        out["n_random_only"][sl] = ok_r.sum(1)
        px_both, px_rand = CentredX(x, ok), CentredX(x_r, ok_r)  # shared by score and floor
        for prefix, rows in (("", np.arange(lo, sl.stop)), ("floor_", other[sl])):
            t = table.take(np.maximum(rows, 0))
            y_r, y_e = simulate(t, rnd_token, rnd_prev), simulate(t, tok_e, prev_e)
            valid = rows >= 0
            both = px_both.pearson(np.concatenate([y_e, y_r], 1))
            rand = px_rand.pearson(y_r)
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
    top_tokens: tuple[int, ...] = GRID_TOP_TOKENS,
    priors: tuple[float, ...] = GRID_PRIOR,
    check: bool = True,
) -> tuple[list[dict[str, Any]], dict[str, LookupTable], Choice]:
    """One record per neuron of ``arr`` (module doc), each side's full lookup table (rows of
    neurons not explained on that side emptied) and the parameters chosen on the validation
    slice among ``top_tokens × priors``; deterministic for the same inputs.

    A record names the table's first :data:`.lookup.SHOWN` tokens (and contexts); the whole
    table (the simulator) is the second value, saved beside the records
    (:func:`.output.write_layer`).
    """
    layer = arr.layer
    train = train_tokens(arr, win)
    choice, keep = choose(train, arr, len(rnd.g), top_tokens, priors)
    tables = fit_tables(train, arr, choice, keep)
    acts = rnd.layer_acts(layer)
    rnd_prev = prev_tokens(win, rnd.g)
    records = blank_records(arr)

    def tok(i: int) -> str:
        return vocab[i] if 0 <= i < len(vocab) else f"<{i}>"

    for side in SIDES:
        sign = 1.0 if side == "positive" else -1.0
        table = tables[side]
        has = table.has
        ho = held_out(arr, win, rnd.wins, rnd.g, side)
        if check:
            check_disjoint(train, ho, rnd.g)
        other = derangement(has, seed, layer, side)
        ex_prev = prev_tokens(win, ho.ex_g)
        sc = score_side(table, ho, acts, rnd.token, sign, other, rnd_prev, ex_prev)
        promote_ids = (arr.write_pos_id if side == "positive" else arr.write_neg_id)[:, :N_PROMOTES]
        cols = {key: v.tolist() for key, v in sc.items()}
        shown_ctx = _shown_contexts(table)
        for i in np.flatnonzero(has).tolist():
            records[i]["sides"].append(
                _side_record(side, table, i, shown_ctx[i], promote_ids[i], tok)
                | {
                    "scores": {s: _num(cols[s][i]) for s in SCORES},
                    "floor": {
                        "from_neuron": int(other[i]) if other[i] >= 0 else None,
                        **{s: _num(cols[f"floor_{s}"][i]) for s in SCORES},
                    },
                    "heldout": {
                        "example_windows": [int(w) for w in ho.ex_windows[i] if w >= 0],
                        "random_windows_excluded": rnd.wins[ho.rnd_excluded[i]].tolist(),
                        "tokens_top_and_random": cols["n_top_and_random"][i],
                        "tokens_random_only": cols["n_random_only"][i],
                    },
                }
            )
    return records, tables, choice


def _shown_contexts(table: LookupTable) -> list[list[int]]:
    """Per neuron, the table columns of the first :data:`.lookup.SHOWN` contexts that raise the
    prediction above the back-off (the ones the line names), in table order."""
    n_i, j_i = np.nonzero(table.ctx_ids >= 0)
    out: list[list[int]] = [[] for _ in range(table.ids.shape[0])]
    if len(n_i) == 0:
        return out
    base = backoff(table, n_i, table.ctx_ids[n_i, j_i])
    up = table.ctx_means[n_i, j_i] > base
    for n, j in zip(n_i[up].tolist(), j_i[up].tolist(), strict=True):
        if len(out[n]) < SHOWN:
            out[n].append(j)
    return out


def _side_record(
    side: str,
    table: LookupTable,
    i: int,
    ctx_cols: list[int],
    promote_ids: np.ndarray,
    tok: Any,
) -> dict[str, Any]:
    """The explanation part of one side's record (scores are added by the caller)."""
    sign = 1.0 if side == "positive" else -1.0
    ids, means, counts = table.ids[i].tolist(), table.means[i].tolist(), table.counts[i].tolist()
    n_all = sum(1 for t in ids if t >= 0)
    n = min(n_all, SHOWN)
    names = [tok(t) for t in ids[:n]]
    prom = [int(t) for t in promote_ids]
    ctx = [
        (int(table.ctx_prev[i, j]), int(table.ctx_ids[i, j]), float(table.ctx_means[i, j]),
         int(table.ctx_counts[i, j]))
        for j in ctx_cols
    ]  # fmt: skip
    ctx_named = [(tok(p) if p >= 0 else "", tok(t), m, c) for p, t, m, c in ctx]
    return {
        "side": side,
        "explainer": "token-lookup",
        "explanation": render(
            side, names, means[:n], counts[:n], [tok(t) for t in prom], ctx_named
        ),
        "tokens": [
            {"id": t, "token": s, "mean": sign * v, "count": c}
            for t, s, v, c in zip(ids[:n], names, means[:n], counts[:n], strict=True)
        ],
        "table_size": n_all,
        "contexts": [
            {"prev_id": p, "prev": pn, "id": t, "token": tn, "mean": sign * m, "count": c}
            for (p, t, m, c), (pn, tn, _, _) in zip(ctx, ctx_named, strict=True)
        ],
        "context_table_size": int((table.ctx_ids[i] >= 0).sum()),
        "output": {
            "source": "atlas write scores",
            "promotes": [{"id": t, "token": tok(t)} for t in prom],
        },
    }
