"""Peak statistics of every (layer, neuron) across the prompts of a run, computed by streaming.

1. For each stored block (a shard of prompts) and layer, drop the BOS rows unless asked to keep
   them, then find per prompt and neuron the peak of ``|activation|`` over positions (one
   argmax over a padded ``[prompts, longest, d_mlp]`` block) and its first position (ties: the
   earliest position wins).
2. Keep two compact per-prompt arrays ``[n_prompts, n_layers, d_mlp]``: the signed activation
   at the peak (float32; the |peak| is its absolute value, exactly) and the peak position
   (uint16 when no prompt is longer than 65,536 tokens, else int32): 6 bytes per
   prompt×neuron, plus running sums for the mean activation.
3. Aggregate across prompts (:func:`aggregate_peaks`) one chunk of neurons at a time, so the
   working memory is a small fraction of step 2's arrays: the prototype's
   ``neurons_aggregated.csv`` columns, plus signed-peak statistics and the mean activation.
   Modes (of the peak token id and of the peak position) break ties by the smallest value and
   are computed on sorted copies in the compact dtypes.

Peak memory of steps 1-3 together (``benchmarks/bench_analyze.py``, 1,000 prompts): 9.7 bytes
per prompt×neuron; the previous version (three arrays, int64 copies of every neuron at once)
needed 74.
No Python loop runs over neurons, tokens or rows: only over blocks, layers and neuron chunks.
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
    """Per-prompt peaks of one run: compact arrays ``[n_prompts, n_layers, d_mlp]``.

    Attributes:
        layers: the model layers of axis 1.
        peak_signed: float32, the activation (with its sign) at the peak of ``|activation|``.
        peak_pos: the position of the peak in the prompt (BOS counts as position 0); uint16,
            or int32 for prompts longer than 65,536 tokens.
        used: ``[n_prompts]`` whether the prompt had any scored token (False: BOS-only prompt).
        act_sum: ``[n_layers, d_mlp]`` sum of activations over scored tokens (float64).
        n_tokens: number of scored tokens.
    """

    layers: list[int]
    peak_signed: np.ndarray
    peak_pos: np.ndarray
    used: np.ndarray
    act_sum: np.ndarray
    n_tokens: int

    @property
    def peak_abs(self) -> np.ndarray:
        """Max over positions of ``|activation|`` (a new float32 array, computed on demand)."""
        return np.abs(self.peak_signed)


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
    longest = max((p.seq_len for p in run.prompts), default=0)
    peak_signed = np.zeros((n_p, n_l, d), np.float32)
    peak_pos = np.zeros((n_p, n_l, d), np.uint16 if longest <= 1 << 16 else np.int32)
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
            _, ps, first = segment_peaks(x, seg_starts)
            peak_signed[pidx, lp] = ps
            peak_pos[pidx, lp] = first - seg_starts[:, None] + skip
            act_sum[lp] += x.sum(axis=0, dtype=np.float64)
    if not used.any():
        raise BadArgumentError(
            f"every prompt of {run.run_dir} is BOS only: pass --include_bos to rank the BOS row"
        )
    if not used.all():
        log.warning("%d prompt(s) have no token besides BOS: left out", int((~used).sum()))
    return PromptPeaks(list(run.layers), peak_signed, peak_pos, used, act_sum, n_tokens)


def column_mode(values: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mode of each column of ``values [n, m]`` (ties: smallest value), its count, n unique.

    Sorts a transposed copy in the input dtype (each column becomes a contiguous sorted row),
    then works on the runs of equal values (int64 per run, not per element).
    The mode keeps the input dtype; counts are int64.
    """
    n, m = values.shape
    s = np.ascontiguousarray(values.T)
    s.sort(axis=1)
    new = np.empty(s.shape, bool)
    new[:, 0] = True
    np.not_equal(s[:, 1:], s[:, :-1], out=new[:, 1:])
    starts = np.flatnonzero(new)  # flat index of each run's first element, column by column
    counts = np.diff(starts, append=s.size)  # run lengths (every column starts a new run)
    first_run = np.searchsorted(starts, np.arange(m) * n)
    n_unique = np.diff(first_run, append=starts.size)
    best = np.maximum.reduceat(counts, first_run)
    col = np.repeat(np.arange(m), n_unique)
    hit = np.flatnonzero(counts == best[col])  # runs reaching their column's best count
    first_hit = hit[np.searchsorted(col[hit], np.arange(m))]  # the first = the smallest value
    return s.reshape(-1)[starts[first_hit]], best, n_unique


def _token_tables(run: Run, functional: frozenset[str]) -> tuple[np.ndarray, np.ndarray, dict]:
    """``[n_prompts, max_seq]`` token ids and functional flags, and ``{id: ascii}``."""
    width = max(p.seq_len for p in run.prompts)
    ids = np.zeros((run.n_prompts, width), np.int32)
    func = np.zeros((run.n_prompts, width), bool)
    ascii_of: dict[int, str] = {}
    for p in run.prompts:  # per prompt and token: metadata only, not activations
        ids[p.index, : p.seq_len] = p.token_ids
        func[p.index, : p.seq_len] = [is_functional(t, functional) for t in p.tokens]
        ascii_of.update(zip(p.token_ids, p.tokens_ascii, strict=False))
    return ids, func, ascii_of


# Neurons per aggregation chunk: at most this many prompt×neuron elements (a few tens of MB of
# working memory) and at most 1/_MIN_CHUNKS of all neurons, so the working memory stays a small
# fraction of the per-prompt arrays at any run size.
_CHUNK_ELEMENTS = 1 << 20
_MIN_CHUNKS = 16

_FLOAT64 = ("mean_peak_abs", "std_peak_abs", "frac_peak_functional", "mean_peak_signed",
            "std_peak_signed", "frac_peak_positive")  # fmt: skip
_FLOAT32 = ("max_peak_abs", "min_peak_abs", "max_peak_signed", "min_peak_signed")
_INT64 = ("mode_peak_token_id", "mode_peak_token_count", "n_unique_peak_token_id",
          "mode_peak_ctx_idx", "mode_peak_ctx_count", "n_unique_peak_ctx_idx")  # fmt: skip


def column_chunks(n_cols: int, n_rows: int, width: int | None = None) -> list[tuple[int, int]]:
    """``[start, stop)`` column ranges covering ``n_cols`` columns of ``n_rows`` rows.

    Every chunk has at least two columns (unless there is only one): numpy sums a single
    column pairwise but several columns row by row, and the statistics must not depend on the
    chunking.
    """
    if width is None:
        width = min(-(-n_cols // _MIN_CHUNKS), _CHUNK_ELEMENTS // max(n_rows, 1))
    starts = list(range(0, n_cols, max(width, 2)))
    if len(starts) > 1 and n_cols - starts[-1] == 1:
        starts.pop()
    return list(zip(starts, [*starts[1:], n_cols], strict=True))


def _aggregate_chunk(
    out: dict[str, np.ndarray],
    cols: slice,
    ps: np.ndarray,
    pos: np.ndarray,
    tok: np.ndarray,
    func: np.ndarray,
) -> None:
    """Fill ``out[...][cols]`` from one chunk: ``[n_used, chunk]`` signed peaks, positions, peak
    token ids and functional flags."""
    pa = np.abs(ps)
    for name, v in (("peak_abs", pa), ("peak_signed", ps)):
        out[f"mean_{name}"][cols] = v.mean(axis=0, dtype=np.float64)
        out[f"std_{name}"][cols] = v.std(axis=0, dtype=np.float64)
        out[f"max_{name}"][cols] = v.max(axis=0)
        out[f"min_{name}"][cols] = v.min(axis=0)
    del pa
    out["frac_peak_functional"][cols] = func.mean(axis=0)
    out["frac_peak_positive"][cols] = (ps > 0).mean(axis=0)
    for what, key, v in (("token", "token_id", tok), ("ctx", "ctx_idx", pos)):
        mode, count, unique = column_mode(v)
        out[f"mode_peak_{key}"][cols] = mode
        out[f"mode_peak_{what}_count"][cols] = count
        out[f"n_unique_peak_{key}"][cols] = unique


def aggregate_peaks(
    run: Run,
    peaks: PromptPeaks,
    functional: frozenset[str] = DEFAULT_FUNCTIONAL_TOKENS,
    *,
    chunk: int | None = None,
) -> dict[str, np.ndarray]:
    """Across-prompt statistics, one entry per :data:`AGGREGATED_COLUMNS` name.

    Each array has ``n_layers * d_mlp`` rows ordered by (layer, neuron). ``std_*`` is the
    population standard deviation. Prompts without a scored token are left out. Neurons are
    aggregated ``chunk`` at a time (default: automatic, see :func:`column_chunks`); the result
    does not depend on it.
    """
    n_l, d = len(peaks.layers), run.d_mlp
    n_cols = n_l * d
    pidx = np.flatnonzero(peaks.used)
    ids, func, ascii_of = _token_tables(run, functional)
    ids, func = ids[pidx], func[pidx]  # [n_used, max_seq]: token metadata, not activations
    rows = np.arange(len(pidx))[:, None]
    signed = peaks.peak_signed.reshape(len(peaks.used), n_cols)  # views, no copy
    where = peaks.peak_pos.reshape(len(peaks.used), n_cols)
    out = {c: np.empty(n_cols, np.float64) for c in _FLOAT64}
    out |= {c: np.empty(n_cols, np.float32) for c in _FLOAT32}
    out |= {c: np.empty(n_cols, np.int64) for c in _INT64}
    for c0, c1 in column_chunks(n_cols, len(pidx), chunk):
        pos = where[pidx, c0:c1]
        _aggregate_chunk(
            out, slice(c0, c1), signed[pidx, c0:c1], pos, ids[rows, pos], func[rows, pos]
        )
    known = np.array(sorted(ascii_of), dtype=np.int64)
    names = np.array([ascii_of[int(i)] for i in known], dtype=object)
    out["layer"] = np.repeat(np.asarray(peaks.layers, np.int64), d)
    out["neuron"] = np.tile(np.arange(d, dtype=np.int64), n_l)
    out["mode_peak_token_ascii"] = names[np.searchsorted(known, out["mode_peak_token_id"])]
    out["mean_act"] = peaks.act_sum.reshape(-1) / max(peaks.n_tokens, 1)
    out["n_prompts"] = np.full(n_cols, len(pidx), np.int64)
    return {c: out[c] for c in AGGREGATED_COLUMNS}
