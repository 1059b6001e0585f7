"""Session-state callbacks of the web app: navigation buttons, chart selections, the run picker.

Callbacks run before the script reruns, so they may write widget state. They read what the last
run stored: ``_n_cand`` (length of the candidate list), ``_layers`` and ``_d_mlp`` (the run's
captured neurons) and ``_sel`` (the neuron last shown).
"""

from __future__ import annotations

import streamlit as st

from .selection import MANUAL, manual_step, picked_from_points, step_index

CHART_KEY = "infl_chart"


def navigate(delta: int) -> None:
    """Prev/Next/-10/+10: move in the candidate list, or through all neurons in manual mode."""
    ss = st.session_state
    n = int(ss.get("_n_cand", 0))
    if ss.get("mode", MANUAL) != MANUAL and n > 0:
        ss["cand_pick"] = step_index(int(ss.get("cand_pick", 0)), delta, n)
        return
    layers = list(ss.get("_layers", [0]))
    sel = ss.get("_sel", (layers[0], 0))
    layer, neuron = int(ss.get("layer_in", sel[0])), int(ss.get("neuron_in", sel[1]))
    d_mlp = int(ss.get("_d_mlp", 1))
    ss["layer_in"], ss["neuron_in"] = manual_step(layers, d_mlp, layer, neuron, delta)


def chart_pick() -> None:
    """A click, box or lasso on the influence chart selects that candidate."""
    ss = st.session_state
    event = ss.get(CHART_KEY)
    points = (event or {}).get("selection", {}).get("points", []) if event else []
    i = picked_from_points(points, int(ss.get("_n_cand", 0)))
    if i is not None:
        ss["cand_pick"] = i


def copy_run_pick() -> None:
    """The run picked in the list goes into the ``run_dir`` text box."""
    pick = st.session_state.get("run_pick")
    if pick:
        st.session_state["run_dir"] = pick
