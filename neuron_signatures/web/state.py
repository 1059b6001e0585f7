"""Session-state callbacks of the web app: navigation buttons, chart selections, the run picker.

Callbacks run before the script reruns, so they may write widget state. They read what the last
run stored: ``_n_cand`` (length of the candidate list), ``_layers``, ``_n_layers`` and ``_d_mlp``
(the run's captured neurons) and ``_sel`` (the neuron last shown). A neuron asked for by name (the
"go to" box, the page URL) waits in ``_goto`` until the sidebar shows it; the neuron on screen is
written back to the URL (``?layer=&neuron=``).
"""

from __future__ import annotations

import streamlit as st

from ..errors import BadArgumentError
from ..neurons import NeuronId, parse_neuron
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


def goto_typed() -> None:
    """The neuron typed in the "go to" box (``L17/N1152``, ``17:1152``...) is shown next."""
    ss = st.session_state
    text = str(ss.get("goto_text") or "").strip()
    if text:
        request_neuron(text, list(ss.get("_layers", [])), ss.get("_n_layers"), ss.get("_d_mlp"))


def request_neuron(
    text: str,
    layers: list[int],
    n_layers: int | None,
    d_mlp: int | None,
    what: str = "neuron",
    scope: str = "run",
) -> NeuronId | None:
    """Parse a typed neuron and queue it in ``_goto``; a bad one leaves its message in
    ``_goto_error`` instead. ``scope`` names what holds ``layers`` (``run`` or ``atlas``)."""
    ss = st.session_state
    try:
        nid = parse_neuron(text, n_layers, d_mlp, what=what)
        if layers and nid.layer not in layers:
            raise BadArgumentError(
                f"{what} {text!r}: layer {nid.layer} was not captured in this {scope} (captured: "
                f"{', '.join(map(str, layers))})"
            )
    except BadArgumentError as e:
        ss["_goto_error"] = str(e)
        return None
    ss.pop("_goto_error", None)
    ss["_goto"] = (nid.layer, nid.index)
    return nid


def read_url(scope: str = "run") -> None:
    """Once per session: ``?layer=17&neuron=1152`` (or ``?neuron=L17/N1152``) asks for a neuron."""
    ss = st.session_state
    if ss.get("_url_read"):
        return
    ss["_url_read"] = True
    qp = st.query_params
    neuron, layer = qp.get("neuron"), qp.get("layer")
    if not neuron:
        return
    neuron = str(neuron).strip()
    if layer and neuron.isdigit():
        neuron = f"{layer}:{neuron}"
    request_neuron(
        neuron, ss["_layers"], ss["_n_layers"], ss["_d_mlp"], what="URL neuron", scope=scope
    )


def write_url(layer: int, neuron: int) -> None:
    """Mirror the neuron on screen in the URL, so it can be bookmarked or shared."""
    qp = st.query_params
    if qp.get("layer") != str(layer) or qp.get("neuron") != str(neuron):
        qp["layer"], qp["neuron"] = str(layer), str(neuron)
