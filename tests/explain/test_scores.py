"""Scores against slow, obviously-correct references: numpy/scipy on the same arrays, and a
per-neuron recomputation from the atlas's public reader and a one-window-at-a-time forward."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from scipy import stats

from neuron_signatures.atlas import open_atlas
from neuron_signatures.atlas import store as atlas_store
from neuron_signatures.explain import correlation_score, pooled_pearson, read_tables
from neuron_signatures.explain.forward import pick_random_windows
from neuron_signatures.explain.lookup import explain_layer, render, token_means
from neuron_signatures.explain.split import (
    check_disjoint,
    held_out,
    read_layer,
    read_windows,
    train_tokens,
)
from tests.explain.conftest import PLANTED_LAYER, PLANTED_NEURON


def test_correlation_equals_numpy_and_scipy() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(7, 300)) * 1e3 + 5e4  # a large offset: the two-pass form keeps it exact
    y = 0.3 * x + rng.normal(size=x.shape) * 1e3
    ok = rng.random(x.shape) < 0.6
    got = pooled_pearson(x, y, ok)
    for i in range(len(x)):
        want = stats.pearsonr(x[i][ok[i]], y[i][ok[i]]).statistic
        assert got[i] == pytest.approx(want, rel=1e-12)
        assert correlation_score(x[i][ok[i]], y[i][ok[i]]) == pytest.approx(
            np.corrcoef(x[i][ok[i]], y[i][ok[i]])[0, 1], rel=1e-12
        )
    const = pooled_pearson(x[:1], np.ones_like(x[:1]), ok[:1])
    assert np.isnan(const[0]) and np.isnan(correlation_score([1.0, 2.0], [3.0, 3.0]))


def test_render_is_pinned() -> None:
    text = render(
        "positive", ["\u2581Texas", " Austin", "x"], [9.12, 7.4, 1.0], [14, 9, 1], [" Austin"]
    )
    want = 'fires on " Texas" (9.12, 14×), " Austin" (7.4, 9×), "x" (1, 1×)'
    assert text == want + ' · promotes (write scores) " Austin"'
    text = render("negative", ['a"b'], [2.5], [3], [])
    assert text == 'goes negative on "a\\"b" (-2.5, 3×)'


def _forward_one(lm: Any, ids: list[int], layer: int) -> np.ndarray:
    import torch

    from neuron_signatures.models import capture_hook_post

    t = torch.tensor([ids])
    got = capture_hook_post(lm, t, torch.ones_like(t), [layer])
    return got[layer][0].float().numpy()


def reference(
    atlas_root: Path, lm: Any, layer: int, n: int, side: str, k: int, prior: float
) -> dict[str, Any]:
    """Everything of one neuron's side from the public reader, dicts and np.corrcoef."""
    from safetensors import safe_open

    atlas = open_atlas(atlas_root)
    man = json.loads((atlas_root / "explanations" / "explanations.json").read_text())
    ctx, start = atlas.ctx_len, 1
    sign = 1.0 if side == "positive" else -1.0
    rec = atlas.neuron(layer, n)
    train_ex = rec.top[0::2] + rec.bottom[0::2]
    train: dict[int, tuple[int, float, int]] = {}  # g -> (token, activation, previous token)
    for ex in train_ex:
        for p in range(start, len(ex.token_ids)):
            train.setdefault(
                ex.window * ctx + p, (ex.token_ids[p], ex.acts[p], ex.token_ids[p - 1])
            )
    with safe_open(str(atlas_store.layer_file(atlas_root, layer)), "numpy") as f:
        sg, sv = f.get_slice("samp_g")[n].ravel(), f.get_slice("samp_v")[n].ravel()
    for g, v in zip(sg.tolist(), sv.tolist(), strict=True):
        if g >= 0:
            ids = atlas.window_ids(g // ctx)
            train.setdefault(g, (ids[g % ctx], v, ids[g % ctx - 1]))
    groups: dict[int, list[float]] = {}
    bigrams: dict[tuple[int, int], list[float]] = {}
    for tok, v, prev in train.values():
        groups.setdefault(tok, []).append(sign * v)
        bigrams.setdefault((prev, tok), []).append(sign * v)
    ranked = sorted(
        (-sum(v) / (len(v) + prior), -len(v), t, float(np.mean(v)))
        for t, v in groups.items()
        if np.mean(v) > 0
    )[:k]
    lookup = {t: m for _, _, t, m in ranked}
    # contexts (lookup.add_contexts): bigrams seen twice or more, ranked by the error they remove
    contexts = sorted(
        (-len(v) * (max(float(np.mean(v)), 0.0) - lookup.get(t, 0.0)) ** 2, -len(v), p, t,
         max(float(np.mean(v)), 0.0))
        for (p, t), v in bigrams.items()
        if len(v) >= 2 and lookup
    )  # fmt: skip
    contexts = [c for c in contexts if c[0] < 0][:16]
    train_w = {ex.window for ex in train_ex}
    ex_keep: list[Any] = []
    for ex in (rec.top if side == "positive" else rec.bottom)[1::2]:
        if ex.window not in train_w and ex.window not in {e.window for e in ex_keep}:
            ex_keep.append(ex)
    real_e, tok_e, real_r, tok_r = [], [], [], []
    for ex in ex_keep:
        for p in range(start, len(ex.token_ids)):
            if ex.window * ctx + p not in train:
                real_e.append(sign * ex.acts[p])
                tok_e.append((ex.token_ids[p - 1], ex.token_ids[p]))
    seen = train_w | {ex.window for ex in ex_keep}
    for w in man["random_windows"]:
        if w in seen:
            continue
        ids = atlas.window_ids(w)
        acts = _forward_one(lm, ids, layer)[:, n]
        for p in range(start, len(ids)):
            if w * ctx + p not in train:
                real_r.append(sign * float(acts[p]))
                tok_r.append((ids[p - 1], ids[p]))
    return {
        "table": [(t, m, -c) for _, c, t, m in ranked],
        "contexts": [(p, t, m, -c) for _, c, p, t, m in contexts],
        "example_windows": [ex.window for ex in ex_keep],
        "excluded": sorted(seen & set(man["random_windows"])),
        "real_e": np.array(real_e),
        "tok_e": tok_e,
        "real_r": np.array(real_r),
        "tok_r": tok_r,
        "lookup": lookup,
    }


def _pred(
    lookup: dict[int, float], toks: list[tuple[int, int]], ctx: dict[tuple[int, int], float]
) -> np.ndarray:
    """The simulator by hand: the context's mean, else the token's, else 0."""
    return np.array([ctx.get((p, t), lookup.get(t, 0.0)) for p, t in toks])


def _row_lookup(row: Any, n: int) -> tuple[dict[int, float], dict[tuple[int, int], float]]:
    """Neuron ``n``'s stored table as dicts."""
    lookup = {int(t): float(m) for t, m in zip(row.ids[n], row.means[n], strict=True) if t >= 0}
    ctx = {
        (int(p), int(t)): float(m)
        for p, t, m in zip(row.ctx_prev[n], row.ctx_ids[n], row.ctx_means[n], strict=True)
        if t >= 0
    }
    return lookup, ctx


def test_scores_equal_a_per_neuron_reference(explained: Path, planted_lm: Any) -> None:
    lines = {}
    for layer in (0, 1, 2):
        path = explained / "explanations" / "layers" / f"layer_{layer:03d}.jsonl"
        for line in path.read_text().splitlines():
            r = json.loads(line)
            lines[(layer, r["neuron"])] = r
    man = json.loads((explained / "explanations" / "explanations.json").read_text())
    picks = [(PLANTED_LAYER, PLANTED_NEURON), (1, 3), (2, 17), (2, 40)]
    # neurons that kept contexts (chosen on the validation slice) are checked too
    for layer in (1, 2):
        tab = read_tables(explained, layer)
        for side_name, t in tab.items():
            with_ctx = np.flatnonzero(t.has_contexts)
            assert len(with_ctx), (layer, side_name)
            picks.append((layer, int(with_ctx[0])))
    checked = with_contexts = 0
    for layer, n in dict.fromkeys(picks):
        chosen = man["chosen"][str(layer)]
        k, prior = chosen["top_tokens"], chosen["prior"]
        for side in lines[(layer, n)]["sides"]:
            ref = reference(explained, planted_lm, layer, n, side["side"], k, prior)
            sign = 1.0 if side["side"] == "positive" else -1.0
            row = read_tables(explained, layer)[side["side"]]
            size = side["table_size"]
            assert int((row.ids[n] >= 0).sum()) == size == len(ref["table"])
            assert row.ids[n, :size].tolist() == [t for t, _, _ in ref["table"]]
            assert row.counts[n, :size].tolist() == [c for _, _, c in ref["table"]]
            np.testing.assert_allclose(
                row.means[n, :size], [m for _, m, _ in ref["table"]], rtol=1e-6
            )
            n_ctx = side["context_table_size"]
            assert int((row.ctx_ids[n] >= 0).sum()) == n_ctx
            if n_ctx:  # kept: exactly the reference's contexts, best first
                with_contexts += 1
                got = list(zip(row.ctx_prev[n, :n_ctx].tolist(), row.ctx_ids[n, :n_ctx].tolist(),
                               row.ctx_counts[n, :n_ctx].tolist(), strict=True))  # fmt: skip
                assert got == [(p, t, c) for p, t, _, c in ref["contexts"]]
                np.testing.assert_allclose(
                    row.ctx_means[n, :n_ctx], [m for _, _, m, _ in ref["contexts"]], rtol=1e-6
                )
            shown = [(t["id"], t["count"], t["mean"]) for t in side["tokens"]]
            assert shown == [
                (int(row.ids[n, j]), int(row.counts[n, j]), sign * float(row.means[n, j]))
                for j in range(min(3, size))
            ]
            assert side["heldout"]["example_windows"] == ref["example_windows"]
            assert side["heldout"]["random_windows_excluded"] == ref["excluded"]
            real = np.concatenate([ref["real_e"], ref["real_r"]])
            assert side["heldout"]["tokens_top_and_random"] == len(real)
            assert side["heldout"]["tokens_random_only"] == len(ref["real_r"])
            lookup, ctx = _row_lookup(row, n)
            pred_e, pred_r = _pred(lookup, ref["tok_e"], ctx), _pred(lookup, ref["tok_r"], ctx)
            both = np.corrcoef(real, np.concatenate([pred_e, pred_r]))[0, 1]
            rand = stats.pearsonr(ref["real_r"], pred_r).statistic
            assert side["scores"]["top_and_random"] == pytest.approx(both, abs=1e-5)
            assert side["scores"]["random_only"] == pytest.approx(rand, abs=1e-5)
            flk, fctx = _row_lookup(row, side["floor"]["from_neuron"])
            f_both = np.corrcoef(real, _pred(flk, ref["tok_e"] + ref["tok_r"], fctx))[0, 1]
            assert side["floor"]["top_and_random"] == pytest.approx(f_both, abs=1e-5)
            checked += 1
    assert checked >= 5 and with_contexts >= 2  # both sides of some neurons, some contexts


def test_held_out_is_disjoint_and_the_check_bites(planted_atlas: Path) -> None:
    atlas = open_atlas(planted_atlas)
    win = read_windows(atlas)
    wins = pick_random_windows(win.lengths, 240, 0)
    pos = np.arange(win.ctx_len)
    r, p = np.nonzero((pos >= 1) & (pos < win.lengths[wins][:, None]))
    rnd_g = wins[r] * win.ctx_len + p
    arr = read_layer(atlas, 1)
    train = train_tokens(arr, win)
    assert len(train.g) > 0
    for side in ("positive", "negative"):
        ho = held_out(arr, win, wins, rnd_g, side)
        check_disjoint(train, ho, rnd_g)  # passes
        # brute force: no (neuron, g) both in train and held out
        tr = set(zip(train.neuron.tolist(), train.g.tolist(), strict=True))
        n_e = np.broadcast_to(np.arange(arr.d)[:, None, None], ho.ex_g.shape)
        held = set(zip(n_e[ho.ex_ok].tolist(), ho.ex_g[ho.ex_ok].tolist(), strict=True))
        nr, tr_i = np.nonzero(ho.rnd_ok)
        held |= set(zip(nr.tolist(), rnd_g[tr_i].tolist(), strict=True))
        assert held and not (tr & held)
        ho.rnd_ok[:] = True  # a split that forgot the masks
        with pytest.raises(AssertionError, match="random token"):
            check_disjoint(train, ho, rnd_g)
    groups = token_means(train)
    table = explain_layer(groups, arr.d, "positive", 3)
    assert table.ids.shape == (arr.d, 3) and table.has.any()


def test_score_time_forward_equals_the_atlas(planted_atlas: Path, planted_lm: Any) -> None:
    """The fresh forward gives the atlas's own activations (same windows, BOS first, padding
    masked): every top example's window, read back through the public reader."""
    from neuron_signatures.explain.forward import score_time_forward

    atlas = open_atlas(planted_atlas)
    win = read_windows(atlas)
    wins = np.arange(len(win.lengths))
    rnd = score_time_forward(planted_lm, win, wins, [1, 2], batch_size=5)
    where = {int(g): t for t, g in enumerate(rnd.g)}
    assert len(rnd.g) == int((win.lengths - 1).sum())  # BOS is not counted, as in the atlas
    acts = rnd.layer_acts(2)
    for n in (0, 9, 33):
        for ex in atlas.neuron(2, n).top:
            got = [acts[where[ex.window * win.ctx_len + p], n] for p in range(1, len(ex.acts))]
            np.testing.assert_allclose(got, ex.acts[1:], rtol=1e-5, atol=1e-5)
