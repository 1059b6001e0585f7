"""The atlas sidebar: the atlas folder, the neuron on screen, display settings, the probe run.

Widget state: ``atlas_dir`` (the folder), ``atlas_layer`` / ``atlas_neuron`` (the neuron on screen),
``atlas_goto`` (the ``L17/N345`` box) and ``atlas_page`` (the neuron page or a search panel).
Buttons and search results change them in callbacks, before the widgets are drawn; a neuron asked
for by name (the box, the URL) waits in ``_goto`` as on the run page. The neuron on screen is
always written back to the URL (``?layer=&neuron=``), so every page can be shared.
"""

from __future__ import annotations

import logging
import random
from argparse import Namespace

import streamlit as st

from ..analysis.results import analysis_dir
from ..atlas import Atlas
from ..errors import NeuronSignaturesError
from .cache import get_analysis, get_atlas
from .heatmap import HeatmapConfig
from .runview import Analysis, RunView
from .selection import manual_step
from .sidebar import allowed, open_view
from .state import read_url, request_neuron, write_url

log = logging.getLogger(__name__)

NEURON_PAGE, TEXT_PAGE, TOKEN_PAGE = "Neuron", "Search by text", "Search by token"
EXPLAIN_PAGE = "Search explanations"
PAGES = (NEURON_PAGE, TEXT_PAGE, TOKEN_PAGE, EXPLAIN_PAGE)


def atlas_input(args: Namespace) -> str:
    """Draw the atlas folder box (``?atlas=``, else ``--atlas``); returns the folder or ``""``."""
    ss = st.session_state
    if "atlas_dir" not in ss:
        ss["atlas_dir"] = str(st.query_params.get("atlas") or args.atlas or "")
    st.sidebar.header("Atlas")
    st.sidebar.text_input(
        "atlas",
        key="atlas_dir",
        placeholder="an atlas folder (optional)",
        help="a folder made by `neuron-signatures atlas`: neuron pages over a corpus, and search",
    )
    folder = str(ss["atlas_dir"]).strip()
    # The URL names the atlas unless it is the one the app was started with (then the shared
    # address stays short); an atlas closed in the sidebar leaves the URL.
    qp = st.query_params
    if folder and folder != (args.atlas or ""):
        if qp.get("atlas") != folder:
            qp["atlas"] = folder
    elif "atlas" in qp and folder != qp.get("atlas"):
        del qp["atlas"]
    return folder


def open_atlas_dir(folder: str, root: str | None) -> Atlas | None:
    """The cached atlas, or None after showing why it cannot be opened (no stack trace)."""
    if not allowed(folder, root, "atlas"):
        return None
    try:
        return get_atlas(folder)
    except NeuronSignaturesError as e:
        st.error(f"Cannot open the atlas: {e}")
    except (KeyError, TypeError, ValueError, OSError) as e:
        log.warning("cannot open %s", folder, exc_info=True)
        st.error(
            f"Cannot open the atlas: {folder}/atlas.json is malformed ({type(e).__name__}: {e}); "
            "rebuild it with `neuron-signatures atlas`."
        )
    return None


# -- callbacks (run before the script reruns) ------------------------------------------------------
def step(delta: int) -> None:
    """Prev / Next: the neighbouring neuron, crossing layer borders (clamped at both ends)."""
    ss = st.session_state
    layers = list(ss.get("_layers", [0]))
    layer, neuron = int(ss.get("atlas_layer", layers[0])), int(ss.get("atlas_neuron", 0))
    ss["atlas_layer"], ss["atlas_neuron"] = manual_step(
        layers, int(ss.get("_d_mlp", 1)), layer, neuron, delta
    )


def random_neuron() -> None:
    """Any neuron of the atlas (unseeded: every press is a new draw)."""
    ss = st.session_state
    ss["atlas_layer"] = random.choice(list(ss.get("_layers", [0])))
    ss["atlas_neuron"] = random.randrange(int(ss.get("_d_mlp", 1)))


def goto_typed() -> None:
    """The neuron typed in the box (``L17/N345``, ``17:345``...) is shown next."""
    ss = st.session_state
    text = str(ss.get("atlas_goto") or "").strip()
    if text:
        request_neuron(
            text, list(ss.get("_layers", [])), ss.get("_n_layers"), ss.get("_d_mlp"), scope="atlas"
        )


def show_neuron(layer: int, neuron: int) -> None:
    """Open a neuron's page (a search result was picked)."""
    ss = st.session_state
    ss["_goto"] = (int(layer), int(neuron))
    ss["atlas_page"] = NEURON_PAGE


# -- widgets ---------------------------------------------------------------------------------------
def select_neuron(atlas: Atlas) -> tuple[int, int]:
    """Navigation buttons, the ``L17/N345`` box, layer and neuron inputs; returns the neuron.

    The URL asks for a neuron once per session; the neuron on screen is written back to it.
    """
    sb, ss = st.sidebar, st.session_state
    ss["_layers"], ss["_n_layers"], ss["_d_mlp"] = atlas.layers, atlas.n_layers, atlas.d_mlp
    read_url(scope="atlas")
    goto = ss.pop("_goto", None)
    if goto:
        ss["atlas_layer"], ss["atlas_neuron"] = goto
    elif "atlas_layer" not in ss and ss.get("_sel"):  # the neuron the run page showed
        ss["atlas_layer"], ss["atlas_neuron"] = ss["_sel"]
    if ss.get("atlas_layer") not in atlas.layers:
        ss["atlas_layer"] = atlas.layers[0]
    if not 0 <= int(ss.get("atlas_neuron", -1)) < atlas.d_mlp:
        ss["atlas_neuron"] = 0
    sb.header("Neuron")
    cols = sb.columns(2)
    cols[0].button("Prev", key="atlas_prev", on_click=step, args=(-1,), width="stretch")
    cols[1].button("Next", key="atlas_next", on_click=step, args=(1,), width="stretch")
    sb.button(
        "Random neuron",
        key="atlas_random",
        on_click=random_neuron,
        width="stretch",
        help="any neuron of the atlas (the address bar shows which)",
    )
    sb.text_input(
        "go to neuron",
        key="atlas_goto",
        on_change=goto_typed,
        placeholder="L17/N345 or 17:345",
        help="any neuron of the atlas, as L17/N345, 17:345 or 17/345 (Enter to go)",
    )
    if ss.get("_goto_error"):
        sb.error(ss.pop("_goto_error"))
    c1, c2 = sb.columns(2)
    layer = int(c1.selectbox("layer", atlas.layers, key="atlas_layer"))
    top = atlas.d_mlp - 1
    neuron = int(c2.number_input("neuron", min_value=0, max_value=top, step=1, key="atlas_neuron"))
    ss["_sel"] = (layer, neuron)  # the run page starts there too
    write_url(layer, neuron)
    return layer, neuron


def display_settings() -> tuple[HeatmapConfig, int]:
    """How example rows look: context tokens either side, values under tokens."""
    with st.sidebar.expander("Display", expanded=False):
        context = int(
            st.number_input(
                "context tokens",
                0,
                512,
                10,
                1,
                key="atlas_ctx",
                help="tokens shown either side of each example's token (open a row for all)",
            )
        )
        values = st.checkbox("values on tokens", False, key="atlas_values")
        per_row = int(
            st.number_input("tokens per row (whole window)", 5, 500, 32, 1, key="atlas_tpr")
        )
    return HeatmapConfig(tokens_per_row=per_row, show_values=values, compact=True), context


def probe_run(args: Namespace, root: str | None) -> tuple[RunView, Analysis] | None:
    """The optional probe run (``?run_dir=`` or ``--run_dir``) whose panels join the page."""
    sb, ss = st.sidebar, st.session_state
    if "run_dir" not in ss:
        ss["run_dir"] = str(st.query_params.get("run_dir") or args.run_dir or "")
    sb.header("Probe run")
    sb.text_input(
        "run_dir",
        key="run_dir",
        placeholder="a run folder (optional)",
        help="a run of `neuron-signatures dump`: adds the neuron's signature, influence, causal "
        "check and probe heatmaps under its atlas page",
    )
    run_dir = str(ss["run_dir"]).strip()
    if not run_dir or not allowed(run_dir, root, "run_dir"):
        return None
    view = open_view(run_dir)
    if view is None:
        return None
    return view, get_analysis(str(analysis_dir(run_dir)))
