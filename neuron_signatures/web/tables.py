"""The tables of the web app as DataFrames (what is shown and what the CSV downloads hold)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from ..tokens import token_display
from .runview import PromptPeaks, RunView
from .selection import Candidate


def token_table(view: RunView, flat: np.ndarray, i: int) -> pd.DataFrame:
    """``ctx_idx, token_id, token, activation`` of one prompt."""
    p = view.run.prompts[i]
    return pd.DataFrame(
        {
            "ctx_idx": np.arange(p.seq_len),
            "token_id": p.token_ids,
            "token": [token_display(t) for t in p.tokens],
            "activation": flat[view.prompt_slice(i)].astype(np.float64),
        }
    )


def peaks_table(view: RunView, peaks: PromptPeaks) -> pd.DataFrame:
    """One row per prompt: where the neuron peaks and the value there."""
    prompts = view.run.prompts
    ctx = peaks.ctx_idx.tolist()
    return pd.DataFrame(
        {
            "prompt_id": view.prompt_ids,
            "peak_ctx_idx": ctx,
            "peak_token": [
                token_display(p.tokens[c]) if p.tokens else ""
                for p, c in zip(prompts, ctx, strict=True)
            ],
            "peak_activation": peaks.value,
            "max_abs": peaks.abs_max,
        }
    )


def probe_peaks(sig: dict[str, Any]) -> pd.DataFrame | None:
    """Per-probe peaks of a signature: its ``probes`` rows (peak columns only), or a
    ``*peak*`` mapping ``probe -> value``; None when the signature has neither."""
    rows = sig.get("probes")
    if isinstance(rows, list) and rows and isinstance(rows[0], dict):
        df = pd.DataFrame(rows)
        cols = [c for c in df.columns if c == "probe_id" or "peak" in c or c == "concept"]
        return df[cols] if cols else df
    for key, value in sig.items():
        if "peak" in key and isinstance(value, dict):
            return pd.DataFrame({"probe": list(value), key: list(value.values())})
    return None


def candidates_table(candidates: list[Candidate]) -> pd.DataFrame:
    """The candidate list with every field of its ranking rows."""
    return pd.DataFrame(
        [{"layer": c.layer, "neuron": c.neuron, "rank": c.rank, **c.fields} for c in candidates]
    )
