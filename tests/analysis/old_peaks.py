"""The peaks aggregation as it was before the memory fix (issue 9, item 7), kept verbatim.

It holds three ``[n_prompts, n_layers, d_mlp]`` arrays (|peak| and signed float32, positions
int32) and aggregates every neuron at once, with int64 copies in the modes: about 50 bytes per
prompt×neuron at peak. The equivalence test pins :mod:`neuron_signatures.analysis.peaks` to it
bit for bit, and ``benchmarks/bench_analyze.py`` measures both side by side.
"""

from __future__ import annotations

import tracemalloc
from collections.abc import Callable
from typing import Any

import numpy as np

from neuron_signatures.analysis import peaks as current
from neuron_signatures.store import Run
from neuron_signatures.tokens import DEFAULT_FUNCTIONAL_TOKENS


def old_compute_prompt_peaks(run: Run, include_bos: bool = False) -> dict:
    """The old streaming pass: three dense per-prompt arrays."""
    n_p, n_l, d = run.n_prompts, len(run.layers), run.d_mlp
    out = {
        "peak_abs": np.zeros((n_p, n_l, d), np.float32),
        "peak_signed": np.zeros((n_p, n_l, d), np.float32),
        "peak_pos": np.zeros((n_p, n_l, d), np.int32),
        "used": np.zeros(n_p, bool),
        "act_sum": np.zeros((n_l, d), np.float64),
        "n_tokens": 0,
        "layers": list(run.layers),
    }
    skip = 0 if include_bos or not run.prepend_bos else 1
    for block in run.iter_blocks():
        rows, seg_starts, has = current._kept_rows(block.starts, block.lengths, skip)
        if rows.size == 0:
            continue
        pidx = np.asarray(block.prompt_indices)[has]
        out["used"][pidx] = True
        out["n_tokens"] += rows.size
        for lp, layer in enumerate(run.layers):
            x = block.acts(layer)[rows]
            pa, ps, first = current.segment_peaks(x, seg_starts)
            out["peak_abs"][pidx, lp] = pa
            out["peak_signed"][pidx, lp] = ps
            out["peak_pos"][pidx, lp] = first - seg_starts[:, None] + skip
            out["act_sum"][lp] += x.sum(axis=0, dtype=np.float64)
    return out


def old_column_mode(values: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    s = np.sort(values, axis=0)
    n = s.shape[0]
    idx = np.arange(n)[:, None]
    new = np.ones_like(s, dtype=bool)
    new[1:] = s[1:] != s[:-1]
    run_start = np.maximum.accumulate(np.where(new, idx, 0), axis=0)
    end = np.ones_like(s, dtype=bool)
    end[:-1] = new[1:]
    run_end = np.minimum.accumulate(np.where(end, idx, n - 1)[::-1], axis=0)[::-1]
    count = run_end - run_start + 1
    best = np.argmax(count, axis=0)
    cols = np.arange(s.shape[1])
    return s[best, cols], count[best, cols], new.sum(axis=0)


def old_aggregate_peaks(
    run: Run, peaks: dict, functional: frozenset[str] = DEFAULT_FUNCTIONAL_TOKENS
) -> dict[str, np.ndarray]:
    """The old aggregation: every neuron at once (token tables from the current module, so
    both follow the same functional-token rule; ids widened to int64 as they were)."""
    n_l, d = len(peaks["layers"]), run.d_mlp
    pidx = np.flatnonzero(peaks["used"])
    pa = peaks["peak_abs"][pidx].reshape(len(pidx), -1)
    ps = peaks["peak_signed"][pidx].reshape(len(pidx), -1)
    pos = peaks["peak_pos"][pidx].reshape(len(pidx), -1)
    ids, func, ascii_of = current._token_tables(run, functional)
    ids = ids.astype(np.int64)
    tok = ids[pidx[:, None], pos]
    mode_tok, tok_count, tok_unique = old_column_mode(tok)
    mode_pos, pos_count, pos_unique = old_column_mode(pos)
    known = np.array(sorted(ascii_of), dtype=np.int64)
    names = np.array([ascii_of[int(i)] for i in known], dtype=object)
    mean_act = peaks["act_sum"].reshape(-1) / max(peaks["n_tokens"], 1)
    return {
        "layer": np.repeat(np.asarray(peaks["layers"], np.int64), d),
        "neuron": np.tile(np.arange(d, dtype=np.int64), n_l),
        "mean_peak_abs": pa.mean(axis=0, dtype=np.float64),
        "std_peak_abs": pa.std(axis=0, dtype=np.float64),
        "max_peak_abs": pa.max(axis=0),
        "min_peak_abs": pa.min(axis=0),
        "frac_peak_functional": func[pidx[:, None], pos].mean(axis=0),
        "mode_peak_token_id": mode_tok,
        "mode_peak_token_ascii": names[np.searchsorted(known, mode_tok)],
        "mode_peak_token_count": tok_count,
        "n_unique_peak_token_id": tok_unique,
        "mode_peak_ctx_idx": mode_pos.astype(np.int64),
        "mode_peak_ctx_count": pos_count,
        "n_unique_peak_ctx_idx": pos_unique,
        "mean_peak_signed": ps.mean(axis=0, dtype=np.float64),
        "std_peak_signed": ps.std(axis=0, dtype=np.float64),
        "max_peak_signed": ps.max(axis=0),
        "min_peak_signed": ps.min(axis=0),
        "frac_peak_positive": (ps > 0).mean(axis=0),
        "mean_act": mean_act,
        "n_prompts": np.full(n_l * d, len(pidx), np.int64),
    }


def old_peaks_table(
    run: Run, include_bos: bool = False, functional: frozenset[str] = DEFAULT_FUNCTIONAL_TOKENS
) -> dict:
    """Both old steps: the per-prompt pass and the aggregation."""
    return old_aggregate_peaks(run, old_compute_prompt_peaks(run, include_bos), functional)


def traced_peak(fn: Callable[[], Any]) -> tuple[Any, int]:
    """``fn()`` and the peak of the memory it allocated (numpy arrays included), in bytes."""
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        base = tracemalloc.get_traced_memory()[0]
        out = fn()
        return out, tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()
