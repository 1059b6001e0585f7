"""Contexts (previous token, token) of the offline explainer, the parameters chosen on the train
split's validation slice, and the explanations' format version 1 still read."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from neuron_signatures.atlas import open_atlas
from neuron_signatures.explain import read_explanations, read_tables, render, simulate
from neuron_signatures.explain.layer import choose
from neuron_signatures.explain.lookup import (
    LookupTable,
    add_contexts,
    bigram_means,
    explain_layer,
    predict,
    token_means,
)
from neuron_signatures.explain.records import simulated_row
from neuron_signatures.explain.split import (
    RESERVOIR,
    TOP,
    LayerArrays,
    TrainTokens,
    read_layer,
    read_windows,
    train_tokens,
)

A, B, C, X = 10, 11, 12, 13  # token ids of the synthetic neurons


def synthetic(n_per_fold: int = 200, seed: int = 0) -> TrainTokens:
    """Two neurons over the same token stream. Neuron 0 fires (4) on B only after A (a context
    neuron: B elsewhere is 0.5 on average); neuron 1 fires (3) on C, more after A in the fit
    fold and less after A in the validation fold (contexts fitted on one fold that the other
    contradicts)."""
    rng = np.random.default_rng(seed)
    cols: dict[str, list[Any]] = {k: [] for k in ("neuron", "token", "prev", "value", "fold")}
    for fold in (0, 1):
        prev = rng.choice([A, X, C], size=n_per_fold)
        tok = rng.choice([B, C, X], size=n_per_fold)
        for n in (0, 1):
            if n == 0:
                value = np.where(tok == B, np.where(prev == A, 4.0, 0.5), 0.0)
                value = value + 0.01 * rng.normal(size=n_per_fold)
            else:
                after_a = np.where(prev == A, 1.0 if fold == 0 else -1.0, 0.0)
                value = (3.0 + after_a + 0.01 * rng.normal(size=n_per_fold)) * (tok == C)
            row = (np.full(n_per_fold, n), tok, prev, value, np.full(n_per_fold, fold))
            for k, v in zip(cols, row, strict=True):
                cols[k].append(v)
    flat = {k: np.concatenate(v) for k, v in cols.items()}
    m = len(flat["token"])
    return TrainTokens(
        neuron=flat["neuron"].astype(np.int64),
        g=np.arange(m, dtype=np.int64),
        token=flat["token"].astype(np.int64),
        value=flat["value"],
        prev=flat["prev"].astype(np.int64),
        src=np.full(m, TOP, np.int8),
        fold=flat["fold"].astype(np.int8),
        weight=np.ones(m),
    )


def arrays(d: int) -> LayerArrays:
    z = np.zeros((d, 0), np.int64)
    return LayerArrays(
        layer=0, top_g=np.zeros((d, 2), np.int64), top_acts=np.zeros((d, 2, 1), np.float32),
        bot_g=z, bot_acts=np.zeros((d, 0, 1), np.float32), samp_g=z,
        samp_v=np.zeros((d, 0), np.float32), min=np.zeros(d), max=np.ones(d),
        write_pos_id=z, write_neg_id=z,
    )  # fmt: skip


def test_bigram_contexts_back_off_to_the_token() -> None:
    train = synthetic()
    table = explain_layer(token_means(train), 2, "positive", k=4, prior=0.0)
    assert table.ids[0, 0] == B and table.ids[1, 0] == C
    with_ctx = add_contexts(table, bigram_means(train), "positive", k_ctx=4, min_count=2)
    # neuron 0's best context is (A, B); its mean is the bigram's train mean
    assert (with_ctx.ctx_prev[0, 0], with_ctx.ctx_ids[0, 0]) == (A, B)
    want = train.value[(train.neuron == 0) & (train.prev == A) & (train.token == B)].mean()
    assert with_ctx.ctx_means[0, 0] == pytest.approx(want, rel=1e-12)
    # the simulator: the context where the bigram occurs, else the token's mean, else 0
    x_b = train.value[(train.neuron == 0) & (train.prev == X) & (train.token == B)].mean()
    toks = np.array([A, B, B, X, B])  # B after A, after B (never seen in train), after X
    got = simulate(with_ctx.take(np.array([0])), toks)[0]
    b_mean = table.means[0, 0]
    np.testing.assert_allclose(got, [0.0, want, b_mean, 0.0, x_b], rtol=1e-12)
    assert x_b < b_mean < want
    np.testing.assert_array_equal(simulate(table.take(np.array([0])), toks)[0][[1, 2, 4]], b_mean)
    # flat triples and [d, n] rows give the same predictions
    rows = np.stack([toks, toks])
    flat = predict(with_ctx, np.repeat([0, 1], 5), rows.ravel(), np.tile([-1, A, B, B, X], 2))
    np.testing.assert_array_equal(simulate(with_ctx, rows).ravel(), flat)


def test_contexts_are_kept_only_where_validation_improves() -> None:
    """The choice reads the train split only: the context neuron keeps its contexts, the neuron
    whose validation fold contradicts its fitted contexts does not; parameters from the grid."""
    train = synthetic()
    choice, keep = choose(train, arrays(2), n_random=100, top_tokens=(1, 4), priors=(0.0, 3.0))
    assert keep["positive"].tolist() == [True, False]
    assert choice.context_neurons == 1
    assert choice.top_tokens in (1, 4) and choice.prior in (0.0, 3.0)
    assert choice.validation_median_with_contexts > choice.validation_median


def test_the_choice_ignores_held_out_data(planted_atlas: Path) -> None:
    """Scrambling the held-out examples (odd ranks) changes nothing chosen; scrambling the
    train examples does (so the check bites)."""
    atlas = open_atlas(planted_atlas)
    win = read_windows(atlas)
    arr = read_layer(atlas, 1)
    want = choose(train_tokens(arr, win), arr, 240)
    rng = np.random.default_rng(0)
    for acts in (arr.top_acts, arr.bot_acts):
        acts[:, 1::2] = rng.normal(size=acts[:, 1::2].shape) * 10
    got = choose(train_tokens(arr, win), arr, 240)
    assert got[0] == want[0]
    assert all(np.array_equal(got[1][s], want[1][s]) for s in want[1])
    arr.top_acts[:, 0::2] = rng.normal(size=arr.top_acts[:, 0::2].shape) * 10
    assert choose(train_tokens(arr, win), arr, 240)[0] != want[0]


def test_reservoir_tokens_are_weighted_by_their_bins(planted_atlas: Path) -> None:
    """Each fold's weighted reservoir tokens add up to the histogram's count of the bins they
    sample (the tokens they stand for)."""
    atlas = open_atlas(planted_atlas)
    arr = read_layer(atlas, 2)
    train = train_tokens(arr, read_windows(atlas))
    assert arr.hist is not None
    r = arr.samp_g.shape[1] // arr.hist.shape[1]
    n = 7
    for fold in (0, 1):
        sel = (train.neuron == n) & (train.src == RESERVOIR) & (train.fold == fold)
        cols = [int(np.flatnonzero(arr.samp_g[n] == g)[0]) for g in train.g[sel]]
        bins = sorted({c // r for c in cols})
        assert np.isclose(train.weight[sel].sum(), arr.hist[n, bins].sum())


def test_render_with_contexts_is_pinned() -> None:
    text = render(
        "positive",
        ["\u2581Texas"],
        [9.12],
        [14],
        [" Austin"],
        [("\u2581of", "\u2581Texas", 11.0, 6)],
    )
    assert text == (
        'fires on " Texas" (9.12, 14×) · in: " of<< Texas>>" (11, 6×) · promotes (write scores) '
        '" Austin"'
    )
    assert render("negative", ["a"], [2.0], [3], [], [("x", "a", 2.5, 2)]) == (
        'goes negative on "a" (-2, 3×) · in: "x<<a>>" (-2.5, 2×)'
    )


def context_sides(atlas: Path) -> list[tuple[int, int, dict[str, Any]]]:
    _, recs = read_explanations(atlas)
    return [
        (r["layer"], r["neuron"], s) for r in recs for s in r["sides"] if s["context_table_size"]
    ]


def test_records_name_their_contexts(explained: Path) -> None:
    man = json.loads((explained / "explanations" / "explanations.json").read_text())
    assert man["format_version"] == 2
    for layer in ("0", "1", "2"):
        c = man["chosen"][layer]
        assert c["top_tokens"] in man["params"]["explainer"]["top_tokens"]
        assert c["prior"] in man["params"]["explainer"]["prior"]
    sides = context_sides(explained)
    assert sum(c["context_neurons"] for c in man["chosen"].values()) == len(sides) > 0
    named = [s for _, _, s in sides if s["contexts"]]
    assert named
    for s in named:
        first = s["contexts"][0]
        quoted = json.dumps(
            (first["prev"] + "<<" + first["token"] + ">>").replace("\u2581", " "),
            ensure_ascii=False,
        )
        assert f" · in: {quoted} (" in s["explanation"]


def test_simulated_row_applies_the_contexts(explained: Path) -> None:
    """The page's row of a neuron with contexts equals the simulator with contexts, and differs
    from the token-only table where a context's bigram occurs."""
    layer, n, side = next((la, n, s) for la, n, s in context_sides(explained) if s["contexts"])
    table = read_tables(explained, layer)[side["side"]].take(np.array([n]))
    sign = 1.0 if side["side"] == "positive" else -1.0
    no_ctx = LookupTable(table.ids, table.means, table.counts)
    win = read_windows(open_atlas(explained))
    ctx = side["contexts"][0]
    hits = 0
    for w in range(len(win.lengths)):
        ids = win.tokens[w, : win.lengths[w]]
        row = simulated_row(explained, layer, n, side["side"], ids)
        np.testing.assert_array_equal(row, sign * simulate(table, ids)[0])
        at = np.flatnonzero((ids[1:] == ctx["id"]) & (ids[:-1] == ctx["prev_id"])) + 1
        if len(at):
            assert row[at[0]] == ctx["mean"] != sign * simulate(no_ctx, ids)[0][at[0]]
            hits += 1
    assert hits > 0


def test_version_1_explanations_still_read(explained: Path, tmp_path: Path) -> None:
    """A version-1 folder (no contexts, float64 tables, no ``chosen``) reads: records, tables
    and the page's simulated row."""
    from safetensors.numpy import load_file, save_file

    old = tmp_path / "A"
    shutil.copytree(explained, old)
    out = old / "explanations"
    man = json.loads((out / "explanations.json").read_text())
    man["format_version"] = 1
    del man["chosen"]
    (out / "explanations.json").write_text(json.dumps(man))
    path = out / "layers" / "layer_000.tables.safetensors"
    t = load_file(str(path))
    save_file(
        {
            k: v.astype(np.float64 if k.endswith("means") else np.int64)
            for k, v in t.items()
            if ".ctx_" not in k
        },
        str(path),
    )
    m, recs = read_explanations(old)
    assert m["format_version"] == 1 and next(recs)["layer"] == 0
    tables = read_tables(old, 0)
    assert tables["positive"].ctx_ids.shape == (tables["positive"].ids.shape[0], 0)
    ids = np.array([2, 5, 7, 5])
    got = simulated_row(old, 0, 5, "positive", ids)
    np.testing.assert_array_equal(got, simulate(tables["positive"].take(np.array([5])), ids)[0])


def test_choice_without_a_fit_fold_explains_nothing_new() -> None:
    """Only validation tokens (an atlas with one example per neuron has no fit fold): the
    choice falls back to the grid's first pair and keeps no contexts, without an error."""
    train = synthetic()
    val_only = train.subset(train.fold == 1)
    choice, keep = choose(val_only, arrays(2), n_random=100, top_tokens=(4, 8), priors=(1.0,))
    assert (choice.top_tokens, choice.prior, choice.context_neurons) == (4, 1.0, 0)
    assert not any(k.any() for k in keep.values())
