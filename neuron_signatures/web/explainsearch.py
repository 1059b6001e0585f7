"""The "Search explanations" panel: find an atlas's neurons by what their explanations say.

A thin shell over :func:`neuron_signatures.index.search_neurons` (the atlas's SQLite neuron table,
built on the first search): words, layers, minimum score, side, explainer, sort and limit in; a
table out (which explainer wrote each row: the offline token lookup, or the LLM and its model)
whose rows link to their neuron pages (``?atlas=&layer=&neuron=``) and open them when clicked.
"""

from __future__ import annotations

import functools

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from ..atlas import Atlas
from ..errors import NeuronSignaturesError
from ..explain.records import LayerScores, has_explanations, layer_scores
from ..index import SORTS, IndexQuery, IndexResult, search_neurons
from ..index.query import EXPLAINER_CHOICES
from ..neurons import parse_layers
from .atlassearch import LINK, app_url, neuron_link, open_picked

PAGE = "Search explanations"
SIDES = {"both": None, "positive": "positive", "negative": "negative"}


def results_table(atlas: Atlas, res: IndexResult) -> pd.DataFrame:
    """One row per (neuron, explainer, side): id, side, explainer, score, floor, detection,
    fuzzing, density, max, explanation, link."""
    base = app_url()
    rows = res.rows
    return pd.DataFrame(
        {
            "neuron": [r.id for r in rows],
            "side": [r.side for r in rows],
            "explainer": [r.source for r in rows],
            "score": [r.score for r in rows],
            "floor": [r.floor for r in rows],
            "detection": [r.detection for r in rows],
            "fuzzing": [r.fuzzing for r in rows],
            "density": [r.density for r in rows],
            "max": [r.max for r in rows],
            "explanation": [r.explanation for r in rows],
            "page": [neuron_link(atlas, r.layer, r.neuron, base) for r in rows],
            "layer": [r.layer for r in rows],
            "index": [r.neuron for r in rows],
        }
    )


def query_inputs() -> IndexQuery:
    """The panel's inputs as a query (a bad layer list raises the library's error)."""
    text = st.text_input("explanation mentions", key="expl_text", placeholder="capital city")
    c1, c2, c3, c4, c5, c6 = st.columns(6)
    layers = c1.text_input("layers", key="expl_layers", placeholder="all, or 10-17")
    min_score = c2.number_input(
        "min score", min_value=-1.0, max_value=1.0, value=-1.0, step=0.05, key="expl_min"
    )
    side = c3.selectbox("side", list(SIDES), key="expl_side")
    explainer = c4.selectbox(
        "explainer", list(reversed(EXPLAINER_CHOICES)), key="expl_explainer"
    )  # "all" first
    sort = c5.selectbox("sort by", [s for s in SORTS if s != "layer"] + ["layer"], key="expl_sort")
    limit = c6.number_input("rows", min_value=1, max_value=5000, value=100, key="expl_limit")
    return IndexQuery(
        text=text.strip() or None,
        layers=parse_layers(layers.strip() or None),
        min_score=None if min_score <= -1.0 else float(min_score),
        side=SIDES[side],
        sort=None if sort == "relevance" and not text.strip() else sort,
        limit=int(limit),
        explainer=explainer,
    )


def explanations_panel(atlas: Atlas) -> None:
    """Draw the panel, then the per-layer score distribution; errors of the input show as one
    message."""
    if not has_explanations(atlas.root):
        st.info(
            f"This atlas has no explanations yet: run `neuron-signatures explain --atlas "
            f"{atlas.root}` to search by explanation."
        )
        return
    search_results(atlas)
    score_distribution(atlas)


def score_table(rows: list[LayerScores]) -> pd.DataFrame:
    """One row per (layer, side): explained neurons, median score, share ≥ 0.5, floor's."""
    return pd.DataFrame(
        {
            "layer": [r.layer for r in rows],
            "side": [r.side for r in rows],
            "neurons": [r.n for r in rows],
            "median": [r.median for r in rows],
            "share ≥ 0.5": [r.share_ge_half for r in rows],
            "floor median": [r.floor_median for r in rows],
            "floor share ≥ 0.5": [r.floor_share_ge_half for r in rows],
        }
    )


def score_figure(rows: list[LayerScores], side: str) -> go.Figure:
    """Box plots per layer of the scores of ``side`` and of their floors."""
    fig = go.Figure()
    for name, color, get in (
        ("score", "#1f77b4", lambda r: r.scores),
        ("floor", "#aaaaaa", lambda r: r.floors),
    ):
        xs = [f"L{r.layer}" for r in rows if r.side == side for _ in range(len(get(r)))]
        ys = np.concatenate([get(r) for r in rows if r.side == side] or [np.zeros(0)])
        fig.add_trace(go.Box(x=xs, y=ys, name=name, marker_color=color, boxpoints=False))
    fig.add_hline(y=0.5, line_dash="dot", line_color="#888")
    fig.update_layout(
        boxmode="group",
        height=320,
        margin=dict(l=10, r=10, t=30, b=10),
        title=f"{side} side: top-and-random score per layer, against its floor",
        yaxis_title="Pearson r",
    )
    return fig


def score_distribution(atlas: Atlas) -> None:
    """Per layer: the distribution of top-and-random scores against the floors (plot, table)."""
    st.markdown("#### Scores per layer")
    try:
        rows = layer_scores(atlas.root)
    except NeuronSignaturesError as e:
        st.error(str(e))
        return
    if not rows:
        st.write("No layer explained yet.")
        return
    sides = [s for s in ("positive", "negative") if any(r.side == s for r in rows)]
    side = st.radio("side", sides, horizontal=True, key="expl_dist_side")
    st.plotly_chart(score_figure(rows, side or sides[0]), key="expl_dist")
    st.dataframe(
        score_table(rows),
        hide_index=True,
        key="expl_dist_table",
        column_config={
            c: st.column_config.NumberColumn(format="%.3f")
            for c in ("median", "share ≥ 0.5", "floor median", "floor share ≥ 0.5")
        },
    )
    st.caption(
        "Top-and-random correlation (held-out top examples + random windows, pooled Pearson r) "
        "of each explained neuron; floor: another neuron's explanation scored the same way. "
        "Median and share ≥ 0.5 over the neurons whose r is defined."
    )


def search_results(atlas: Atlas) -> None:
    """The search inputs and the table of matching neurons."""
    try:
        res = search_neurons(atlas.root, query_inputs())
    except NeuronSignaturesError as e:
        st.error(str(e))
        return
    if not res.rows:
        st.write("No neuron matches these filters.")
        return
    df = results_table(atlas, res)
    st.dataframe(
        df,
        hide_index=True,
        key="expl_hits",
        column_order=[c for c in df.columns if c not in ("layer", "index")],
        column_config={
            "page": LINK,
            "score": st.column_config.NumberColumn(format="%.3f"),
            "floor": st.column_config.NumberColumn(format="%.3f"),
            "detection": st.column_config.NumberColumn(format="%.3f"),
            "fuzzing": st.column_config.NumberColumn(format="%.3f"),
            "density": st.column_config.NumberColumn(format="%.4f"),
            "max": st.column_config.NumberColumn(format="%.4g"),
        },
        on_select=functools.partial(open_picked, "expl_hits", df),
        selection_mode="single-row",
    )
    st.caption(
        f"{len(res.rows)} rows in {res.took_ms:.1f} ms · score = top-and-random correlation · "
        "detection, fuzzing = the LLM scorers' balanced accuracy"
    )
