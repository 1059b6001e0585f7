"""The Streamlit script: ``streamlit run neuron_signatures/web/app.py -- --run_dir R``.

``neuron-signatures app --run_dir R`` starts it. Script arguments (after ``--``): ``--run_dir`` and
``--runs_root`` (default: the current folder); a ``?run_dir=`` query parameter overrides
``--run_dir`` and ``?layer=&neuron=`` picks the neuron. When the server listens on a non-local
address, only folders under ``--runs_root`` open. The page reads runs and analysis files only
through the library (store reader, analysis results) and never imports torch.
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
from neuron_signatures.web import panels, settings, sidebar  # noqa: E402

log = logging.getLogger(__name__)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Script arguments; anything unknown (e.g. a test runner's own flags) is ignored."""
    p = argparse.ArgumentParser(prog="neuron-signatures app", allow_abbrev=False, add_help=False)
    p.add_argument("--run_dir", default=None)
    p.add_argument("--runs_root", default=".")
    args, _ = p.parse_known_args(list(sys.argv[1:] if argv is None else argv))
    return args


def main(argv: Sequence[str] | None = None) -> None:
    """Draw the whole page once (Streamlit reruns this on every interaction)."""
    st.set_page_config(page_title="Neuron signatures", layout="wide")
    st.title("Neuron signatures")
    opened = sidebar.open_inputs(parse_args(argv))
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


if __name__ == "__main__":
    main()
