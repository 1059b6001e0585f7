"""The sidebar: run and analysis folders, the neuron selection modes, navigation, display settings.

Widget state lives in ``st.session_state``; buttons and chart selections change it in the callbacks
of :mod:`state`. A widget's state is only written here before that widget is drawn.
"""

from __future__ import annotations

import logging
from argparse import Namespace
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import streamlit as st

from ..analysis.results import analysis_dir
from ..errors import NeuronSignaturesError
from .cache import get_analysis, get_influence_table, get_view
from .heatmap import NORMALIZATIONS, HeatmapConfig
from .runview import Analysis, RunView, discover_runs
from .selection import (
    INFLUENCE,
    INFLUENCE_METRICS,
    MANUAL,
    NAV_STEPS,
    PEAKS,
    Candidate,
    InfluenceTable,
    available_modes,
    default_mode,
    filter_influence,
    index_of,
    influence_candidates,
    kept_caption,
    metric_bounds,
    peaks_candidates,
)
from .state import copy_run_pick, navigate

log = logging.getLogger(__name__)


@dataclass
class Selection:
    """The neuron on screen and where it was picked from."""

    mode: str
    layer: int
    neuron: int
    candidates: list[Candidate] = field(default_factory=list)
    index: int = 0
    source: Path | None = None  # the ranking file of the candidates
    table: InfluenceTable | None = None
    kept: np.ndarray | None = None

    @property
    def candidate(self) -> Candidate | None:
        return self.candidates[self.index] if self.candidates else None


# -- run and analysis folders --------------------------------------------------------------------
def initial_run_dir(args: Namespace, query: dict, runs: list[Path]) -> str:
    """Query parameter ``run_dir``, else ``--run_dir``, else the first run under the runs root."""
    for value in (query.get("run_dir"), args.run_dir):
        if value:
            return str(value)
    return str(runs[0]) if runs else ""


def open_inputs(args: Namespace) -> tuple[RunView, Analysis, int] | None:
    """Draw the folder inputs and open the run; on failure show why and return None."""
    sb, ss = st.sidebar, st.session_state
    sb.header("Run")
    ss.setdefault("runs_root", args.runs_root)
    sb.text_input("runs root", key="runs_root", help="folder searched for run folders")
    runs = discover_runs(ss["runs_root"])
    if "run_dir" not in ss:
        ss["run_dir"] = initial_run_dir(args, dict(st.query_params), runs)
    if runs:
        sb.selectbox(
            "pick a run",
            [""] + [str(p) for p in runs],
            key="run_pick",
            format_func=lambda s: s or "(choose)",
            on_change=copy_run_pick,
        )
    sb.text_input("run_dir", key="run_dir", help="a run folder (made by `neuron-signatures dump`)")
    run_dir = str(ss["run_dir"]).strip()
    if not run_dir:
        st.info("Pick a run folder in the sidebar, or type its path in run_dir.")
        return None
    view = _open_view(run_dir)
    if view is None:
        return None
    if ss.get("_analysis_for") != run_dir or "analysis_dir" not in ss:
        ss["analysis_dir"] = str(analysis_dir(run_dir))
        ss["_analysis_for"] = run_dir
    sb.text_input("analysis_dir", key="analysis_dir", help="rankings, write scores, signatures")
    top_k = sb.number_input(
        "top_k_limit",
        min_value=1,
        max_value=100_000,
        value=200,
        step=10,
        key="top_k_limit",
        help="longest candidate list",
    )
    return view, get_analysis(str(ss["analysis_dir"])), int(top_k)


def _open_view(run_dir: str) -> RunView | None:
    """The cached run, or None after showing why it cannot be opened (no stack trace)."""
    try:
        return get_view(run_dir)
    except NeuronSignaturesError as e:
        st.error(f"Cannot open the run: {e}")
    except (KeyError, TypeError, ValueError, OSError) as e:
        log.warning("cannot open %s", run_dir, exc_info=True)
        st.error(
            f"Cannot open the run: {run_dir}/manifest.json is malformed ({type(e).__name__}: "
            f"{e}); re-create the run with `neuron-signatures dump`."
        )
    return None


# -- neuron selection ----------------------------------------------------------------------------
def select_neuron(view: RunView, analysis: Analysis, top_k: int) -> Selection:
    """Navigation buttons, the mode and its inputs; returns the neuron to show."""
    sb, ss = st.sidebar, st.session_state
    modes = available_modes(bool(analysis.peaks), bool(analysis.influence))
    if ss.get("mode") not in modes:
        ss["mode"] = default_mode(modes)
    sb.header("Neuron")
    cols = [*sb.columns(2), *sb.columns(2)]
    for col, (label, delta) in zip(cols, NAV_STEPS.items(), strict=True):
        col.button(
            label,
            key=f"nav_{label}",
            on_click=navigate,
            args=(delta,),
            width="stretch",
            help=f"move {delta:+d} in the current list (manual: through all neurons)",
        )
    mode = sb.selectbox("selection_mode", modes, key="mode")
    if mode == PEAKS:
        sel = _peaks(analysis, top_k)
    elif mode == INFLUENCE:
        sel = _influence(analysis, top_k)
    else:
        sel = Selection(MANUAL, 0, 0)
    ss["_n_cand"], ss["_layers"], ss["_d_mlp"] = (
        len(sel.candidates),
        view.run.layers,
        view.run.d_mlp,
    )
    if sel.candidates:
        _pick_candidate(sel, (mode, str(sel.source)))
    else:
        if mode != MANUAL:
            sb.warning("No neuron in this list: widen the filter. Showing the manual choice.")
        sel.layer, sel.neuron = _manual(view)
    ss["_sel"] = (sel.layer, sel.neuron)
    return sel


def _pick_candidate(sel: Selection, source_tag: tuple[str, str]) -> None:
    sb, ss = st.sidebar, st.session_state
    n = len(sel.candidates)
    if ss.get("_cand_src") != source_tag or int(ss.get("cand_pick", 0)) >= n:
        prev = ss.get("_sel")
        found = index_of(sel.candidates, *prev) if prev else None
        ss["cand_pick"] = found or 0
        ss["_cand_src"] = source_tag
    labels = [c.label for c in sel.candidates]
    sel.index = int(
        sb.selectbox("candidate", range(n), key="cand_pick", format_func=lambda i: labels[i])
    )
    sb.caption(f"{sel.index + 1} of {n}: Prev/Next step 1, -10/+10 step 10.")
    c = sel.candidates[sel.index]
    sel.layer, sel.neuron = c.layer, c.neuron


def _manual(view: RunView) -> tuple[int, int]:
    sb, ss = st.sidebar, st.session_state
    layers, d_mlp = view.run.layers, view.run.d_mlp
    prev = ss.get("_sel", (layers[0], 0))
    if ss.get("layer_in") not in layers:
        ss["layer_in"] = prev[0] if prev[0] in layers else layers[0]
    if not 0 <= int(ss.get("neuron_in", -1)) < d_mlp:
        ss["neuron_in"] = int(min(max(prev[1], 0), d_mlp - 1))
    layer = sb.selectbox("layer", layers, key="layer_in")
    neuron = sb.number_input("neuron", min_value=0, max_value=d_mlp - 1, step=1, key="neuron_in")
    return int(layer), int(neuron)


def _peaks(analysis: Analysis, top_k: int) -> Selection:
    sb = st.sidebar
    ranking = analysis.peaks[0]
    if len(analysis.peaks) > 1:
        names = [r.name for r in analysis.peaks]
        ranking = analysis.peaks[names.index(sb.selectbox("peaks_file", names, key="peaks_file"))]
    cands = peaks_candidates(ranking, top_k)
    sb.caption(f"Source: {ranking.name} ({len(cands)} of {len(ranking.neurons)})")
    return Selection(PEAKS, 0, 0, cands, source=ranking.path)


def _influence(analysis: Analysis, top_k: int) -> Selection:
    sb, ss = st.sidebar, st.session_state
    names = [r.name for r in analysis.influence]
    if ss.get("influence_file") not in names:
        ss["influence_file"] = names[0]
    name = sb.selectbox("influence_file", names, key="influence_file")
    ranking = analysis.influence[names.index(name)]
    table = get_influence_table(ranking)
    metric = sb.selectbox("filter metric", INFLUENCE_METRICS, key="infl_metric")
    values = table.metric(metric)
    lo, hi = metric_bounds(values)
    if hi > lo:
        lo, hi = sb.slider(
            "metric range",
            min_value=lo,
            max_value=hi,
            value=(lo, hi),
            step=(hi - lo) / 1000,
            format="%.4g",
            key=f"infl_range|{name}|{metric}",
        )
    eps = (hi - lo) * 1e-9
    kept = filter_influence(values, lo - eps, hi + eps)
    cands = influence_candidates(table, kept, metric, top_k)
    sb.caption(f"Source: {name} | {kept_caption(len(kept), len(table), len(cands))}")
    return Selection(
        INFLUENCE, 0, 0, cands, source=ranking.path, table=table, kept=kept[: len(cands)]
    )


# -- display settings ----------------------------------------------------------------------------
def heatmap_settings(n_prompts: int) -> tuple[HeatmapConfig, str, int]:
    """Heatmap controls (applied to every heatmap); returns the config, prompt order and limit."""
    with st.sidebar.expander("Heatmap settings", expanded=False):
        cfg = HeatmapConfig(
            tokens_per_row=int(st.number_input("tokens_per_row", 5, 500, 50, 5, key="hm_tpr")),
            show_values=st.checkbox("values on tokens", True, key="hm_values"),
            exclude_bos=st.checkbox(
                "exclude BOS from max (and hide it in charts)", True, key="hm_bos"
            ),
            normalization=st.selectbox("normalization", NORMALIZATIONS, key="hm_norm"),
            value_decimals=int(st.number_input("decimals", 0, 6, 2, 1, key="hm_dec")),
            minimum_threshold=float(
                st.number_input(
                    "minimum_threshold", 0.0, 1e6, 5e-5, 1e-5, format="%.6f", key="hm_thr"
                )
            ),
            minimum_opacity=float(
                st.number_input("minimum_opacity", 0.0, 1.0, 0.05, 0.01, key="hm_minop")
            ),
            compact=st.checkbox("compact view", True, key="hm_compact"),
        )
        order = st.selectbox(
            "stacked prompt order",
            ["run", "peak"],
            key="hm_order",
            format_func=lambda o: "run order" if o == "run" else "peak |act| desc",
        )
        if int(st.session_state.get("hm_limit", 1)) > n_prompts:  # a smaller run was opened
            del st.session_state["hm_limit"]
        limit = st.number_input(
            "prompts shown (overlay, stacked)",
            1,
            max(1, n_prompts),
            min(50, max(1, n_prompts)),
            10,
            key="hm_limit",
        )
    return cfg, str(order), int(limit)
