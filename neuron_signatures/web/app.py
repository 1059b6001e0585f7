"""The Streamlit script: ``streamlit run neuron_signatures/web/app.py -- --run_dir R``.

``neuron-signatures app --run_dir R`` (or ``--atlas A``, ``--neuron_records E``) starts it. Script
arguments (after ``--``): ``--run_dir``, ``--atlas``, ``--neuron_records`` and ``--runs_root``
(default: the current folder); ``?run_dir=``, ``?atlas=`` and ``?neuron_records=`` query parameters
override them and ``?layer=&neuron=`` picks the neuron. With a NeuronRecord folder the page shows
its records (:mod:`.recordsview`); with an atlas, the atlas's neuron page (plus the run's panels
when a run is open too) and its search panels; without either, the run page. When the server
listens on a non-local address, only folders under ``--runs_root`` open. The page reads runs,
analysis files and atlases only through the library and imports torch only when a text search
first needs the model.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

# `streamlit run <this file>` puts this folder first on sys.path, where modules such as `charts`
# would shadow same-named top-level packages; take it off, and make the package importable even
# when it is not installed.
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]
if str(_HERE.parents[1]) not in sys.path:
    sys.path.append(str(_HERE.parents[1]))

import streamlit as st  # noqa: E402

from neuron_signatures.errors import NeuronSignaturesError  # noqa: E402
from neuron_signatures.web import (  # noqa: E402
    atlasnav,
    atlassearch,
    atlasview,
    explainsearch,
    panels,
    recordsview,
    settings,
    sidebar,
)

log = logging.getLogger(__name__)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Script arguments; anything unknown (e.g. a test runner's own flags) is ignored."""
    p = argparse.ArgumentParser(prog="neuron-signatures app", allow_abbrev=False, add_help=False)
    p.add_argument("--run_dir", default=None)
    p.add_argument("--atlas", default=None)
    p.add_argument("--neuron_records", default=None)
    p.add_argument("--runs_root", default=".")
    args, _ = p.parse_known_args(list(sys.argv[1:] if argv is None else argv))
    return args


def main(argv: Sequence[str] | None = None) -> None:
    """Draw the whole page once (Streamlit reruns this on every interaction)."""
    st.set_page_config(page_title="Neuron signatures", layout="wide")
    st.title("Neuron signatures")
    args = parse_args(argv)
    records_dir = recordsview.records_input(args)
    if records_dir:
        recordsview.records_page(records_dir, sidebar.access_root(args))
        return
    atlas_dir = atlasnav.atlas_input(args)
    if atlas_dir:
        atlas_page(args, atlas_dir)
        return
    opened = sidebar.open_inputs(args)
    if opened is None:
        return
    view, analysis, top_k = opened
    run = view.run
    st.caption(
        f"{run.run_dir} | model {run.model_name} | {len(run.layers)} of {run.n_layers} layers x "
        f"{run.d_mlp} neurons | {run.n_prompts} prompts, {run.n_tokens} tokens | {run.save_dtype}"
    )
    if run.n_prompts == 0:
        st.warning("This run has no prompts: dump some with `neuron-signatures dump`.")
        return
    try:
        sel = sidebar.select_neuron(view, analysis, top_k)
        cfg, order, limit = settings.heatmap_settings(run.n_prompts)
        panels.render_page(view, analysis, sel, cfg, order, limit)
    except NeuronSignaturesError as e:
        st.error(str(e))


def atlas_page(args: argparse.Namespace, atlas_dir: str) -> None:
    """The atlas's neuron page or one of its search panels; the sidebar picks the neuron."""
    root = sidebar.access_root(args)
    atlas = atlasnav.open_atlas_dir(atlas_dir, root)
    if atlas is None:
        return
    try:
        layer, neuron = atlasnav.select_neuron(atlas)
        cfg, context = atlasnav.display_settings()
        run = atlasnav.probe_run(args, root)
        page = st.radio(
            "page", atlasnav.PAGES, key="atlas_page", horizontal=True, label_visibility="collapsed"
        )
        if page == atlasnav.TEXT_PAGE:
            atlassearch.text_panel(atlas)
        elif page == atlasnav.TOKEN_PAGE:
            atlassearch.token_panel(atlas)
        elif page == atlasnav.EXPLAIN_PAGE:
            explainsearch.explanations_panel(atlas)
        else:
            atlasview.render_neuron(atlas, atlas.neuron(layer, neuron), cfg, context)
            if run is not None:
                atlasview.probe_run_panels(*run, layer, neuron, cfg, atlas)
    except NeuronSignaturesError as e:
        st.error(str(e))
    except OSError as e:  # a file of the atlas went missing or unreadable after it opened
        log.warning("cannot read %s", atlas_dir, exc_info=True)
        st.error(
            f"Cannot read the atlas {atlas_dir}: {e}; rebuild it with `neuron-signatures atlas`"
        )


if __name__ == "__main__":
    main()
