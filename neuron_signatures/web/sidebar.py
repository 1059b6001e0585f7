"""The sidebar: run and analysis folders, the neuron selection modes, navigation, signatures file.

Widget state lives in ``st.session_state``; buttons and chart selections change it in the callbacks
of :mod:`state`. A widget's state is only written here before that widget is drawn. The neuron on
screen is mirrored in the page URL (``?layer=&neuron=``), which also picks the neuron on load; the
heatmap settings are in :mod:`settings`.
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
from .access import check_inside, is_local_address
from .cache import get_analysis, get_influence_table, get_view
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
from .state import copy_run_pick, goto_typed, navigate, read_url, write_url

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
    signatures_file: str | None = None  # None: every signatures_*.json, the newest winning

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
    root = access_root(args)
    if root is not None or "runs_root" not in ss:
        ss["runs_root"] = str(args.runs_root)
    sb.text_input(
        "runs root",
        key="runs_root",
        disabled=root is not None,
        help="folder searched for run folders"
        + (" (fixed: the app listens on a non-local address)" if root is not None else ""),
    )
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
    if not allowed(run_dir, root, "run_dir"):
        return None
    view = open_view(run_dir)
    if view is None:
        return None
    if ss.get("_analysis_for") != run_dir or "analysis_dir" not in ss:
        ss["analysis_dir"] = str(analysis_dir(run_dir))
        ss["_analysis_for"] = run_dir
    sb.text_input("analysis_dir", key="analysis_dir", help="rankings, write scores, signatures")
    if not allowed(str(ss["analysis_dir"]), root, "analysis_dir"):
        return None
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


def access_root(args: Namespace) -> str | None:
    """``--runs_root`` when the app is reachable from other machines (then only folders under it
    open, and it cannot change); None on a local address."""
    return None if is_local_address(st.get_option("server.address")) else str(args.runs_root)


def allowed(folder: str, root: str | None, what: str) -> bool:
    """True unless the app is exposed (``root`` set) and ``folder`` is outside it (error shown)."""
    if root is None:
        return True
    try:
        check_inside(folder, root, what)
    except NeuronSignaturesError as e:
        st.error(str(e))
        return False
    return True


def open_view(run_dir: str) -> RunView | None:
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
    """Navigation buttons, the "go to" box, the mode and its inputs; returns the neuron to show.

    A neuron asked for by name (``_goto``: the box, or the URL on load) is selected in the current
    list when it is there; otherwise the page switches to manual mode to show it.
    """
    sb, ss = st.sidebar, st.session_state
    run = view.run
    ss["_layers"], ss["_n_layers"], ss["_d_mlp"] = run.layers, run.n_layers, run.d_mlp
    read_url()
    goto = ss.get("_goto")
    modes = available_modes(bool(analysis.peaks), bool(analysis.influence))
    if goto and ss.pop("_goto_manual", False):
        ss["mode"] = MANUAL
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
    sb.text_input(
        "go to neuron",
        key="goto_text",
        on_change=goto_typed,
        placeholder="L17/N1152 or 17:1152",
        help="any neuron of the run, as L17/N1152, 17:1152 or 17/1152 (Enter to go)",
    )
    if ss.get("_goto_error"):
        sb.error(ss.pop("_goto_error"))  # shown once, after the typing that caused it
    mode = sb.selectbox("selection_mode", modes, key="mode")
    if mode == PEAKS:
        sel = _peaks(analysis, top_k)
    elif mode == INFLUENCE:
        sel = _influence(analysis, top_k)
    else:
        sel = Selection(MANUAL, 0, 0)
    ss["_n_cand"] = len(sel.candidates)
    if sel.candidates:
        source_tag = (mode, str(sel.source))
        if goto:
            found = index_of(sel.candidates, *goto)
            if found is None:  # not in this list: show it in manual mode
                ss["_goto_manual"] = True
                st.rerun()
            ss["cand_pick"], ss["_cand_src"] = found, source_tag
            del ss["_goto"]
        _pick_candidate(sel, source_tag)
    else:
        if mode != MANUAL:
            sb.warning("No neuron in this list: widen the filter. Showing the manual choice.")
        if goto:
            ss["layer_in"], ss["neuron_in"] = goto
            del ss["_goto"]
        sel.layer, sel.neuron = _manual(view)
    ss["_sel"] = (sel.layer, sel.neuron)
    write_url(sel.layer, sel.neuron)
    sel.signatures_file = _signatures_source(analysis)
    return sel


def _signatures_source(analysis: Analysis) -> str | None:
    """Which ``signatures_*.json`` the card reads: all of them (newest wins) or one file."""
    ss = st.session_state
    files = analysis.signature_files
    if not files:
        return None
    options = ["", *files]
    if ss.get("sig_file") not in options:
        ss["sig_file"] = ""
    every = f"all {len(files)} file{'s' if len(files) > 1 else ''} (newest wins)"
    picked = st.sidebar.selectbox(
        "signatures file",
        options,
        key="sig_file",
        format_func=lambda f: f or every,
        help="which signatures_*.json names the neuron; with all, the newest file listing it wins",
    )
    return picked or None


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
