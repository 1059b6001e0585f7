"""The header: run, model and hook, prompt, layer and neuron, cursor line and neuron statistics."""

from __future__ import annotations

import numpy as np
from textual.widgets import Static

from ..cells import fit, quoted, visible
from ..state import BrowserState, NeuronStats

N_LINES = 7
TEXT_CELLS = 240  # the prompt text is cut here; the token strip shows every token


def header_lines(state: BrowserState, values: np.ndarray, stats: NeuronStats) -> list[str]:
    """The header's lines, plain text (the prototype's content, tokens shown losslessly)."""
    run, p = state.run, state.prompt
    c = state.ctx_idx
    layers = "" if len(run.layers) == run.n_layers else f" (captured {len(run.layers)})"
    concept = f" | concept: {p.concept}" if p.concept else ""
    return [
        f"Run: {run.run_dir}",
        f"Model: {run.model_name} | hook: {run.hook_name} | saved {run.save_dtype}",
        f"Prompt {p.index + 1}/{run.n_prompts}: {visible(p.probe_id)} | "
        f"seq_len={p.seq_len}{concept}",
        f"Text: {fit(visible(p.text[: 2 * TEXT_CELLS]), TEXT_CELLS)}",
        f"Layer {state.layer}/{run.n_layers - 1}{layers} | Neuron {state.neuron}/{run.d_mlp - 1}",
        f"Cursor: ctx_idx={c} | token_id={p.token_ids[c]} | token={quoted(p.tokens[c], 60)} | "
        f"act={float(values[c]):+.6f}",
        f"Stats: max={stats.max_val:+.6f}@{stats.max_idx}({quoted(p.tokens[stats.max_idx], 20)})"
        f" | min={stats.min_val:+.6f}@{stats.min_idx}({quoted(p.tokens[stats.min_idx], 20)})"
        f" | mean={stats.mean:+.6f} | std={stats.std:.6f}",
    ]


class RunHeader(Static):
    """The header block above the token table: a fixed number of lines, each cut to the width."""

    DEFAULT_CSS = f"RunHeader {{ height: {N_LINES}; text-wrap: nowrap; text-overflow: ellipsis; }}"

    def __init__(self, **kwargs: object) -> None:
        super().__init__("", markup=False, **kwargs)  # type: ignore[arg-type]

    def show(self, state: BrowserState, values: np.ndarray, stats: NeuronStats) -> None:
        self.update("\n".join(header_lines(state, values, stats)), layout=False)
