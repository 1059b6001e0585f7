"""The atlas neuron page: header, histogram, top ± logits, examples, interval samples, probe run.

Everything shown comes from ``open_atlas(A).neuron(layer, n)`` (:class:`NeuronAtlas`); the optional
probe run's panels are those of the run page (:mod:`.panels`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import streamlit as st

from ..atlas import Atlas, Example, NeuronAtlas, WriteScore
from ..errors import NeuronSignaturesError
from ..explain import records
from ..tokens import token_display
from . import charts, panels, steer
from .cache import get_atlas_model, get_influence_table
from .examples import EXAMPLE_CSS, example_values, examples_html, intervals_html
from .heatmap import CSS, HeatmapConfig, escape, max_abs, rows_html, token_cells
from .runview import Analysis, RunView
from .selection import INFLUENCE, MANUAL, influence_candidates, locate
from .sidebar import Selection


def render_neuron(atlas: Atlas, rec: NeuronAtlas, cfg: HeatmapConfig, context: int) -> None:
    """Every atlas panel of one neuron."""
    header(atlas, rec)
    explanation_panel(atlas, rec, cfg)
    steer.atlas_steer(atlas, rec)
    left, right = st.columns([3, 2])
    with left:
        title = f"L{rec.layer}/N{rec.index}: activations over {rec.stats.count:,} tokens"
        fig = charts.histogram_figure(rec.histogram_edges, rec.histogram_counts, title)
        st.plotly_chart(fig, key="atlas_hist")
        st.caption(
            "Exact counts in the atlas's half-octave bins (edges ±2^e and ±1.5·2^e); orange: "
            "below 0, green: at or above 0; log-count y."
        )
    with right:
        logits(rec.write_top, rec.write_bottom)
    top_scale = abs(rec.top[0].value) if rec.top else 0.0
    bottom_scale = abs(rec.bottom[0].value) if rec.bottom else 0.0
    st.markdown(f"#### Top activations ({len(rec.top)})")
    st.caption(
        "The token that ranked is outlined, with "
        f"{context} tokens either side; click a row for the whole window, hover a token for its "
        f"value. One scale: the top value {top_scale:.4g}."
    )
    st.html(examples_html(rec.top, top_scale, cfg, context))
    st.markdown(f"#### Bottom activations ({len(rec.bottom)})")
    st.caption(f"Most negative first; one scale: |bottom value| {bottom_scale:.4g}.")
    st.html(examples_html(rec.bottom, bottom_scale, cfg, context))
    st.markdown(f"#### Interval samples ({len(rec.intervals)} intervals)")
    whole = max(abs(rec.stats.max), abs(rec.stats.min)) if rec.stats.count else 0.0
    st.caption(
        "Uniform samples of the tokens in each interval of near-equal count, highest first; only "
        f"the sampled token's value is stored (one scale: max |activation| {whole:.4g})."
    )
    st.html(intervals_html(rec.intervals, whole, cfg, context))


def header(atlas: Atlas, rec: NeuronAtlas) -> None:
    """``L17/N345``, the model and the neuron's statistics."""
    s = rec.stats
    st.subheader(f"L{rec.layer}/N{rec.index}")
    st.caption(
        f"{atlas.model_name} | layer {rec.layer} of {atlas.n_layers}, {atlas.d_mlp} neurons per "
        f"layer | atlas {atlas.root} ({len(atlas.layers)} layers, {atlas.tokens_seen:,} tokens)"
    )
    cols = st.columns(6)
    cols[0].metric(
        "density (> 0)", f"{s.frac_positive:.2%}", help="share of tokens with activation > 0"
    )
    cols[1].metric(
        f"density (> {s.threshold:g})",
        f"{s.frac_above_threshold:.2%}",
        help=f"share of tokens with activation > {s.threshold:g} (the atlas's density threshold)",
    )
    cols[2].metric("max", f"{s.max:.4g}", help=f"min {s.min:.4g}")
    cols[3].metric("mean", f"{s.mean:.4g}")
    cols[4].metric(
        "std",
        f"{s.std:.4g}",
        help=f"skewness {s.skewness:.3g}, excess kurtosis {s.kurtosis:.3g} (exact)",
    )
    cols[5].metric(
        "tokens seen",
        f"{s.count:,}",
        delta=f"{s.nonfinite:,} non-finite" if s.nonfinite else None,
        delta_color="inverse",
        help="NaN or ±inf values make mean, std, skewness and kurtosis NaN"
        if s.nonfinite
        else None,
    )


LOGIT_TOKEN_CHARS = 24  # longer tokens are cut with "…" (the whole token is in ``token_full``)
LOGIT_COLUMNS = ["score", "token"]  # the value first: a long token can never push it out of view


def short_token(text: str, limit: int = LOGIT_TOKEN_CHARS) -> str:
    """``text`` cut to ``limit`` characters, the last one ``…`` when anything was cut."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def logits_table(scores: list[WriteScore]) -> pd.DataFrame:
    """``score, token, token_id, token_full`` of one side of the write scores (``token`` shown
    cut to :data:`LOGIT_TOKEN_CHARS`)."""
    shown = [token_display(w.token) for w in scores]
    return pd.DataFrame(
        {
            "score": np.array([w.score for w in scores], dtype=np.float64),
            "token": [short_token(t) for t in shown],
            "token_id": [w.token_id for w in scores],
            "token_full": shown,
        }
    )


def logits(top: list[WriteScore], bottom: list[WriteScore]) -> None:
    """The tokens the neuron's output direction promotes (+) and suppresses (-) the most: the
    score column first and pinned, so the values stay in view next to any token."""
    st.markdown("#### Top ± logits")
    if not top and not bottom:
        st.caption("This atlas has no write scores (built with --write_scores_k 0).")
        return
    c1, c2 = st.columns(2)
    config = {
        "score": st.column_config.NumberColumn(format="%+.3f", width=70, pinned=True),
        "token": st.column_config.TextColumn(help="cut to 24 characters; token_full in the data"),
    }
    for col, caption, side in ((c1, "promotes (+)", top), (c2, "suppresses (−)", bottom)):
        col.caption(caption)
        col.dataframe(
            logits_table(side), hide_index=True, column_config=config, column_order=LOGIT_COLUMNS
        )


def probe_run_panels(
    view: RunView,
    analysis: Analysis,
    layer: int,
    neuron: int,
    cfg: HeatmapConfig,
    atlas: Atlas | None = None,
) -> None:
    """The run page's neuron card (signature, influence and causal check, write scores) and its
    stacked heatmap of the probe prompts, for the neuron on screen; with ``atlas``, the
    signature's name is checked against the atlas's corpus."""
    run = view.run
    st.markdown("---")
    st.markdown(f"### Probe run: {run.run_dir}")
    if layer not in run.layers:
        st.info(f"Layer {layer} was not captured in this run (captured: {run.layers}).")
        return
    sel = Selection(MANUAL, layer, neuron)
    for ranking in analysis.influence:  # the first influence file that lists the neuron
        table = get_influence_table(ranking)
        i = locate(table, layer, neuron)
        if i is not None:
            cands = influence_candidates(table, np.array([i]), "abs_influence", 1)
            sel = Selection(INFLUENCE, layer, neuron, cands, source=ranking.path, table=table)
            break
    flat = view.neuron_flat(layer, neuron)
    peaks = view.peaks(flat)
    ws_html = panels.neuron_card(view, analysis, sel, peaks, atlas)
    if sel.mode == MANUAL and analysis.influence:
        st.caption("not in any influence file of the run")
    shown = view.shown_prompts(flat, "peak", 50)
    panels.stacked_heatmap(view, flat, sel, cfg, "peak", shown, ws_html, peaks=peaks)


@dataclass
class WindowRows:
    """A held-out window under the page's explanation: its tokens, the real activations (NaN
    where unknown) and the simulator's (:func:`records.simulated_row`)."""

    label: str
    window: int
    tokens: list[str]
    token_ids: list[int]
    real: np.ndarray
    simulated: np.ndarray
    stored: bool  # the real row is the atlas's stored activations


def heldout_windows(
    atlas: Atlas, rec: NeuronAtlas, side: dict[str, Any]
) -> list[tuple[str, int, Example | None]]:
    """``(label, window, example)`` of every held-out window of ``side``: the atlas's held-out
    examples (activations stored) first, then the score-time random windows (not stored)."""
    kind = "top" if side["side"] == "positive" else "bottom"
    out: list[tuple[str, int, Example | None]] = [
        (f"held-out {kind} example: window {ex.window} ({ex.value:+.4g})", ex.window, ex)
        for ex in records.heldout_examples(rec, side)
    ]
    out += [(f"random window {w}", w, None) for w in records.random_windows(atlas.root, side)]
    return out


def window_rows(
    atlas: Atlas, rec: NeuronAtlas, side: dict[str, Any], choice: tuple[str, int, Example | None]
) -> WindowRows:
    """The real and simulated rows of one held-out window (the real one NaN for a random window
    until it is recomputed)."""
    label, window, ex = choice
    if ex is not None:
        ids, tokens, real = list(ex.token_ids), list(ex.tokens), example_values(ex)
    else:
        ids = records.window_token_ids(atlas.root, window).tolist()
        tokens, real = [atlas.token(i) for i in ids], np.full(len(ids), np.nan)
    sim = records.simulated_row(atlas.root, rec.layer, rec.index, side["side"], np.array(ids))
    return WindowRows(label, window, tokens, ids, real, sim, ex is not None)


def window_rows_html(rows: WindowRows, cfg: HeatmapConfig) -> str:
    """The real row, and the simulated row under it, on one scale."""
    bos = np.arange(len(rows.tokens)) == 0  # BOS, an attention sink, would set the scale
    scale = max(max_abs(rows.real, bos), max_abs(rows.simulated, bos))
    parts = [CSS, EXAMPLE_CSS]
    for cls, name, vals in (
        ("nse-real", "real", rows.real),
        ("nse-sim", "simulated", rows.simulated),
    ):
        cells = token_cells(rows.tokens, rows.token_ids, vals, scale, cfg)
        parts.append(
            f'<div class="{cls}"><div class="nsa-label">{escape(name)}</div>'
            f"{rows_html(cells, cfg.tokens_per_row)}</div>"
        )
    return "".join(parts)


def explanation_panel(atlas: Atlas, rec: NeuronAtlas, cfg: HeatmapConfig) -> None:
    """The neuron's explanation per side and explainer (offline, LLM), each score with its
    floor and held-out sizes, and a held-out window's simulated activations (of the offline
    lookup table) under the real ones; nothing without explanations."""
    try:
        found = records.neuron_explanations(atlas.root, rec.layer, rec.index)
    except NeuronSignaturesError as e:
        st.error(str(e))
        return
    if not found:
        return
    st.markdown("#### Explanations")
    for folder, expl in found.items():
        if expl is None:
            st.caption(
                f"{folder}: no explanation for this neuron (nothing on either side, or layer "
                "not explained)."
            )
            continue
        params = ", ".join(f"{k} {v}" for k, v in expl.explainer.items() if k != "name")
        st.caption(
            f"{folder}: explainer {expl.explainer.get('name', '?')} ({params}); scores on "
            "held-out data"
        )
        if expl.error:
            st.warning(f"{expl.error} (rerun explain with --resume to retry this neuron)")
        for side in expl.sides:
            side_scores(side)
    offline = found.get(records.FOLDER)
    if offline is not None and offline.sides:
        simulated_panel(atlas, rec, offline, cfg)


def side_scores(side: dict[str, Any]) -> None:
    """One side's explanation and its two simulation scores, and an LLM side's detection and
    fuzzing balanced accuracies, each with its floor."""
    st.markdown(f"**{side['side']}** ({side['explainer']})")
    st.text(side["explanation"])
    cols = st.columns(2)
    for col, (key, name) in zip(cols, records.SCORE_NAMES.items(), strict=True):
        v, f = side["scores"][key], side["floor"][key]
        n = side["heldout"][f"tokens_{key}"]
        col.metric(
            name,
            "n/a" if v is None else f"{v:+.3f}",
            delta="floor n/a" if f is None else f"floor {f:+.3f}",
            delta_color="off",
            help=f"Pearson r over {n} held-out tokens; floor: the explanation of neuron "
            f"{side['floor']['from_neuron']} scored the same way",
        )
    classifiers = side.get("classifiers") or {}
    if classifiers:
        for col, (kind, c) in zip(st.columns(len(classifiers)), classifiers.items(), strict=True):
            ba, fl, n = c["balanced_accuracy"], c["floor"], c["n_windows"]
            auc = (
                f"AUC {_f3(c['auc'])} (floor {_f3(fl['auc'])})"
                if c["method"] == "logprobs"
                else "AUC unavailable (the server gave no logprobs)"
            )
            col.metric(
                kind,
                "n/a" if ba is None else f"{ba:.3f}",
                delta="floor n/a"
                if fl["balanced_accuracy"] is None
                else f"floor {fl['balanced_accuracy']:.3f}",
                delta_color="off",
                help=f"balanced accuracy over {n['activating']} activating + "
                f"{n['non_activating']} quiet held-out windows; {auc}; floor: the explanation "
                f"of neuron {fl['from_neuron']} scored the same way",
            )


def _f3(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.3f}"


def simulated_panel(
    atlas: Atlas, rec: NeuronAtlas, expl: records.NeuronExplanation, cfg: HeatmapConfig
) -> None:
    """One held-out window (selectable): real activations, the simulated ones under them."""
    names = [s["side"] for s in expl.sides]
    name = (
        st.radio("side", names, horizontal=True, key="expl_row_side")
        if len(names) > 1
        else names[0]
    )
    side = expl.side(name) or expl.sides[0]
    choices = heldout_windows(atlas, rec, side)
    if not choices:
        st.caption("No held-out window for this side.")
        return
    i = st.selectbox(
        "held-out window",
        range(len(choices)),
        format_func=lambda j: choices[j][0],
        key="expl_window",
    )
    rows = window_rows(atlas, rec, side, choices[int(i or 0)])
    key = ("expl_real", atlas.root.as_posix(), rec.layer, rec.index, rows.window)
    if not rows.stored:
        cache = st.session_state.setdefault("expl_real_rows", {})
        if key in cache:
            rows.real = cache[key]
        elif st.button("compute the real row (loads the model)", key="expl_real"):
            try:
                rows.real = cache[key] = records.real_window_row(
                    atlas.root, get_atlas_model(atlas), rec.layer, rec.index, rows.window
                )
            except NeuronSignaturesError as e:
                st.error(str(e))
    st.html(window_rows_html(rows, cfg))
    st.caption(
        "Real: the atlas's stored activations of a held-out example (exact, no model), or for a "
        "random window the score-time forward rerun on that window (those activations are not "
        "stored). Simulated: the explanation's lookup table applied to the window's tokens. "
        "One scale for both rows."
    )
