"""Peak statistics of every (layer, neuron) across the prompts of a run, computed by streaming.

1. For each stored block (a shard of prompts) and layer, drop the BOS rows unless asked to keep
   them, then find per prompt and neuron the peak of ``|activation|`` over positions (one
   argmax over a padded ``[prompts, longest, d_mlp]`` block) and its first position (ties: the
   earliest position wins).
2. Keep three small per-prompt arrays ``[n_prompts, n_layers, d_mlp]`` (|peak|, signed value at
   the peak, peak position) and running sums for the mean activation; nothing else is held.
3. Aggregate across prompts (:func:`aggregate_peaks`): the prototype's ``neurons_aggregated.csv``
   columns, plus signed-peak statistics and the mean activation. Modes (of the peak token id and
   of the peak position) break ties by the smallest value.

No Python loop runs over neurons, tokens or rows: only over blocks and layers.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from ..errors import BadArgumentError
from ..store import Run
from ..tokens import DEFAULT_FUNCTIONAL_TOKENS, is_functional

log = logging.getLogger(__name__)

AGGREGATED_COLUMNS = (
    "layer",
    "neuron",
    "mean_peak_abs",
    "std_peak_abs",
    "max_peak_abs",
    "min_peak_abs",
    "frac_peak_functional",
    "mode_peak_token_id",
    "mode_peak_token_ascii",
    "mode_peak_token_count",
    "n_unique_peak_token_id",
    "mode_peak_ctx_idx",
    "mode_peak_ctx_count",
    "n_unique_peak_ctx_idx",
    "mean_peak_signed",
    "std_peak_signed",
    "max_peak_signed",
    "min_peak_signed",
    "frac_peak_positive",
    "mean_act",
    "n_prompts",
)


@dataclass
class PromptPeaks:
    """Per-prompt peaks of one run: arrays ``[n_prompts, n_layers, d_mlp]``.

    Attributes:
        layers: the model layers of axis 1.
        peak_abs: max over positions of ``|activation|``.
        peak_signed: the activation (with its sign) at that position.
        peak_pos: the position of the peak in the prompt (BOS counts as position 0).
        used: ``[n_prompts]`` whether the prompt had any scored token (False: BOS-only prompt).
        act_sum: ``[n_layers, d_mlp]`` sum of activations over scored tokens (float64).
        n_tokens: number of scored tokens.
    """

    layers: list[int]
    peak_abs: np.ndarray
    peak_signed: np.ndarray
    peak_pos: np.ndarray
    used: np.ndarray
    act_sum: np.ndarray
    n_tokens: int


def segment_peaks(x: np.ndarray, starts: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Peak of ``|x|`` per row segment, the signed value there and its first row.

    Args:
        x: ``[n_rows, d]`` values; segments are contiguous, non-empty and cover all rows.
        starts: ``[k]`` first row of each segment, increasing, ``starts[0] == 0``.

    Returns:
        ``(peak_abs [k, d], peak_signed [k, d], first_row [k, d])`` with rows relative to ``x``.
    """
    n, k = x.shape[0], len(starts)
    lengths = np.diff(np.append(starts, n))
    seg = np.repeat(np.arange(k), lengths)
    # Scatter |x| into a padded [k, d, longest] block (pad -1 < any |x|): argmax along the
    # contiguous last axis gives the first maximum, which is the tie rule.
    pad = np.full((k, x.shape[1], int(lengths.max())), -1.0, np.float32)
    pad[seg, :, np.arange(n) - starts[seg]] = np.abs(x)
    off = pad.argmax(axis=2)  # [k, d]
    peak = np.take_along_axis(pad, off[:, :, None], axis=2)[:, :, 0]
    first = off + starts[:, None]
    return peak, np.take_along_axis(x, first, axis=0), first


def _kept_rows(
    starts: list[int], lengths: list[int], skip: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rows to keep in a block (skipping ``skip`` leading rows per prompt), per-prompt segment
    starts in the kept array, and which prompts of the block have at least one kept row."""
    kept_len = np.maximum(np.asarray(lengths) - skip, 0)
    has = kept_len > 0
    first = np.asarray(starts) + skip
    rows = np.concatenate(
        [np.arange(f, f + n) for f, n in zip(first[has], kept_len[has], strict=True)]
        or [np.empty(0, np.int64)]
    )
    seg_starts = np.concatenate([[0], np.cumsum(kept_len[has])[:-1]]).astype(np.int64)
    return rows, seg_starts, has


def compute_prompt_peaks(run: Run, include_bos: bool = False) -> PromptPeaks:
    """Stream the run once and return the per-prompt peaks of every captured neuron."""
    n_p, n_l, d = run.n_prompts, len(run.layers), run.d_mlp
    peak_abs = np.zeros((n_p, n_l, d), np.float32)
    peak_signed = np.zeros((n_p, n_l, d), np.float32)
    peak_pos = np.zeros((n_p, n_l, d), np.int32)
    used = np.zeros(n_p, bool)
    act_sum = np.zeros((n_l, d), np.float64)
    skip = 0 if include_bos or not run.prepend_bos else 1
    n_tokens = 0
    for block in run.iter_blocks():
        rows, seg_starts, has = _kept_rows(block.starts, block.lengths, skip)
        if rows.size == 0:
            continue
        pidx = np.asarray(block.prompt_indices)[has]
        used[pidx] = True
        n_tokens += rows.size
        for lp, layer in enumerate(run.layers):
            x = block.acts(layer)[rows]
            pa, ps, first = segment_peaks(x, seg_starts)
            peak_abs[pidx, lp] = pa
            peak_signed[pidx, lp] = ps
            peak_pos[pidx, lp] = first - seg_starts[:, None] + skip
            act_sum[lp] += x.sum(axis=0, dtype=np.float64)
    if not used.any():
        raise BadArgumentError(
            f"every prompt of {run.run_dir} is BOS only: pass --include_bos to rank the BOS row"
        )
    if not used.all():
        log.warning("%d prompt(s) have no token besides BOS: left out", int((~used).sum()))
    return PromptPeaks(list(run.layers), peak_abs, peak_signed, peak_pos, used, act_sum, n_tokens)


def column_mode(values: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mode of each column of ``values [n, m]`` (ties: smallest value), its count, n unique."""
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
    best = np.argmax(count, axis=0)  # first maximum = smallest value (s is sorted ascending)
    cols = np.arange(s.shape[1])
    return s[best, cols], count[best, cols], new.sum(axis=0)


def _token_tables(run: Run, functional: frozenset[str]) -> tuple[np.ndarray, np.ndarray, dict]:
    """``[n_prompts, max_seq]`` token ids and functional flags, and ``{id: ascii}``."""
    width = max(p.seq_len for p in run.prompts)
    ids = np.zeros((run.n_prompts, width), np.int64)
    func = np.zeros((run.n_prompts, width), bool)
    ascii_of: dict[int, str] = {}
    for p in run.prompts:  # per prompt and token: metadata only, not activations
        ids[p.index, : p.seq_len] = p.token_ids
        func[p.index, : p.seq_len] = [is_functional(t, functional) for t in p.tokens_ascii]
        ascii_of.update(zip(p.token_ids, p.tokens_ascii, strict=False))
    return ids, func, ascii_of


def aggregate_peaks(
    run: Run, peaks: PromptPeaks, functional: frozenset[str] = DEFAULT_FUNCTIONAL_TOKENS
) -> dict[str, np.ndarray]:
    """Across-prompt statistics, one entry per :data:`AGGREGATED_COLUMNS` name.

    Each array has ``n_layers * d_mlp`` rows ordered by (layer, neuron). ``std_*`` is the
    population standard deviation. Prompts without a scored token are left out.
    """
    n_l, d = len(peaks.layers), run.d_mlp
    pidx = np.flatnonzero(peaks.used)
    pa = peaks.peak_abs[pidx].reshape(len(pidx), -1)
    ps = peaks.peak_signed[pidx].reshape(len(pidx), -1)
    pos = peaks.peak_pos[pidx].reshape(len(pidx), -1)
    ids, func, ascii_of = _token_tables(run, functional)
    tok = ids[pidx[:, None], pos]
    mode_tok, tok_count, tok_unique = column_mode(tok)
    mode_pos, pos_count, pos_unique = column_mode(pos)
    known = np.array(sorted(ascii_of), dtype=np.int64)
    names = np.array([ascii_of[int(i)] for i in known], dtype=object)
    mean_act = peaks.act_sum.reshape(-1) / max(peaks.n_tokens, 1)
    return {
        "layer": np.repeat(np.asarray(peaks.layers, np.int64), d),
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
