"""The atlas neuron page: header, histogram, top ± logits, examples, interval samples, probe run.

Everything shown comes from ``open_atlas(A).neuron(layer, n)`` (:class:`NeuronAtlas`); the optional
probe run's panels are those of the run page (:mod:`.panels`).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import streamlit as st

from ..atlas import Atlas, NeuronAtlas, WriteScore
from ..tokens import token_display
from . import charts, panels, steer
from .cache import get_influence_table
from .examples import examples_html, intervals_html
from .heatmap import HeatmapConfig
from .runview import Analysis, RunView
from .selection import INFLUENCE, MANUAL, influence_candidates, locate
from .sidebar import Selection


def render_neuron(atlas: Atlas, rec: NeuronAtlas, cfg: HeatmapConfig, context: int) -> None:
    """Every atlas panel of one neuron."""
    header(atlas, rec)
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
