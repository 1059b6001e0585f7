"""The CPU reduction as one compiled pass (numba): the same state as :func:`.reduce.update`.

On a CPU the torch reduction is some forty full passes over a batch's ``[N, d]`` activations
(casts, boolean sums, gathers, sorts) and cost as much as the model's forward. Here each token's
row of activations is read into cache once and folded into everything:

1. float64 sums of ``x`` .. ``x^4`` (made exact digits by the caller, as in torch), ``min``
   and ``max`` (NaN propagates, as ``torch.minimum`` does), ``n_pos``, ``n_thr``: short loops
   over the row that the compiler vectorises;
2. the histogram, through the same block table (:mod:`.bins`), counted in an int32
   ``(bin, neuron)`` table (int16 when a batch has < 2^15 tokens) whose other half holds each
   reservoir's threshold (the top 16 or 32 bits of its ``r``-th priority, a conservative
   filter): one cache line serves the count and the reservoir test;
3. the interval reservoirs by insertion: a token enters a ``(neuron, bin)`` reservoir iff its
   priority is below the reservoir's ``r``-th, so the result is the bottom-r set that
   :func:`.reduce._sample` keeps;
4. the top-k and bottom-k lists by insertion, ordered by ``(order key, g ascending)`` exactly as
   :func:`.ranking.rank_union` orders them; ``src`` records where each kept entry came from (its
   old slot ``j``, or ``-1 - t`` for the batch's token ``t``) so that the caller gathers windows.

Steps 3 and 4 first count a row's candidates in a vectorised loop and only walk the row when
there are some (rare once lists and reservoirs are full: tokens come in ascending priority).
Neurons are split into blocks run on threads (the GIL is released); each neuron is handled by
one thread in a fixed token order, so results do not depend on the thread count. Everything but
the float64 sums is an exact selection or count, bit-identical to the torch path; the sums
are added in priority order rather than torch's pairwise order (equal to float64 rounding).
"""

from __future__ import annotations

import concurrent.futures
import functools
import itertools
from typing import Any

import numba
import numpy as np

_FLIP = np.int32(0x7FFFFFFF)
I32_MIN, I32_MAX = -(2**31), 2**31 - 1
SMALL_BATCH = 2**15  # batches of fewer tokens count in int16
CHUNK = 32  # neurons tested together for candidates (a row has few: most chunks are skipped)
STATE: tuple[str, ...] = ("min", "max", "n_pos", "n_thr", "top_key", "top_g", "bot_key")
STATE += ("bot_g", "samp_h", "samp_g", "samp_v")


@numba.njit(cache=True, nogil=True, boundscheck=False)
def _block(
    lo, hi, acts, bits, rows, pos, order, g, prio, thr, table, shift,
    s1, s2, s3, s4, mn, mx, nan, npos, nthr, cells, pshift,
    tkey, tg, tsrc, tacts, bkey, bg, bsrc, bacts, rh, rg, rv,
):  # fmt: skip
    """Fold the tokens ``order`` into neurons ``lo:hi`` (see the module docstring)."""
    d = acts.shape[2]
    w = hi - lo
    k = tkey.shape[1]
    r = rh.shape[1]
    nb = cells.shape[0]
    a1, a2, a3, a4 = s1[lo:hi], s2[lo:hi], mn[lo:hi], mx[lo:hi]
    a5, a6, a7 = nan[lo:hi], npos[lo:hi], nthr[lo:hi]
    a8, a9 = s3[lo:hi], s4[lo:hi]
    cf = cells.reshape(-1)  # (count, threshold) pairs: one cache line serves both
    tlast = tkey[lo:hi, k - 1].copy()
    blast = bkey[lo:hi, k - 1].copy()
    t32 = np.maximum(tlast, I32_MIN).astype(np.int32)  # the k-th keys, clamped to int32
    b32 = np.minimum(blast, I32_MAX).astype(np.int32)
    cell = np.empty(w, np.int64)  # flat index of the (bin, neuron) count in cells
    flag = np.empty(w, np.int32)
    key = np.empty(w, np.int32)
    cand = np.empty(w + 1, np.int64)
    for ii in range(order.shape[0]):
        t = order[ii]
        row = rows[t]
        p = pos[t]
        gt = g[t]
        pr = prio[t]
        ph = pr >> pshift  # top bits: the reservoir filter runs on cells' integer type
        x = acts[row, p, lo:hi]
        xb = bits[row, p, lo:hi]
        # 1. one short loop per statistic: each vectorises
        for n in range(w):
            a1[n] += np.float64(x[n])
        for n in range(w):
            v = np.float64(x[n])
            v2 = v * v
            a2[n] += v2
            a8[n] += v2 * v
            a9[n] += v2 * v2
        for n in range(w):
            a3[n] = min(a3[n], x[n])
        for n in range(w):
            a4[n] = max(a4[n], x[n])
        for n in range(w):
            a5[n] += x[n] != x[n]
        for n in range(w):
            a6[n] += x[n] > 0
        for n in range(w):
            a7[n] += x[n] > thr
        # 2. histogram, and 3. the reservoir test on the same cache line
        for n in range(w):
            cell[n] = (table[(xb[n] >> shift) + 512] * d + lo + n) * 2
        for n in range(w):
            i = cell[n]
            cf[i] += 1
            flag[n] = ph <= cf[i + 1]
        c = 0
        for c0 in range(0, w, CHUNK):  # a vectorised test per chunk, then compaction
            c1 = min(c0 + CHUNK, w)
            hit = np.int32(0)
            for n in range(c0, c1):
                hit |= flag[n]
            if hit:
                for n in range(c0, c1):
                    cand[c] = n
                    c += flag[n]
        for q in range(c):
            n = cand[q]
            bn = cell[n] // (2 * d)
            grp = (lo + n) * nb + bn
            if pr >= rh[grp, r - 1]:  # the int32 test is a superset
                continue
            j = r - 1
            while j > 0 and pr < rh[grp, j - 1]:
                rh[grp, j] = rh[grp, j - 1]
                rg[grp, j] = rg[grp, j - 1]
                rv[grp, j] = rv[grp, j - 1]
                j -= 1
            rh[grp, j] = pr
            rg[grp, j] = gt
            rv[grp, j] = x[n]
            cf[cell[n] + 1] = rh[grp, r - 1] >> pshift
        # 4. top-k and bottom-k (ties at the k-th key are settled by g below)
        for n in range(w):  # order key: integer order = float order (int32 throughout)
            key[n] = xb[n] ^ ((xb[n] >> np.int32(31)) & _FLIP)
        c = 0
        for c0 in range(0, w, CHUNK):  # int32 bounds: a superset, the int64 test is below
            c1 = min(c0 + CHUNK, w)
            hit = np.int32(0)
            for n in range(c0, c1):
                hit |= np.int32(key[n] >= t32[n]) | np.int32(key[n] <= b32[n])
            if hit:
                for n in range(c0, c1):
                    cand[c] = n
                    c += (key[n] >= t32[n]) | (key[n] <= b32[n])
        for q in range(c):
            n = cand[q]
            kn = np.int64(key[n])
            m = lo + n
            if kn > tlast[n] or (kn == tlast[n] and gt < tg[m, k - 1]):
                tlast[n] = _insert(tkey, tg, tsrc, m, kn, gt, -1 - t, 1)
                t32[n] = max(tlast[n], I32_MIN)
            if kn < blast[n] or (kn == blast[n] and gt < bg[m, k - 1]):
                blast[n] = _insert(bkey, bg, bsrc, m, kn, gt, -1 - t, -1)
                b32[n] = min(blast[n], I32_MAX)
    # 5. the kept examples' windows follow their entries (new ones are filled by the caller)
    _follow(lo, hi, tsrc, tacts)
    _follow(lo, hi, bsrc, bacts)


@numba.njit(cache=True, nogil=True, boundscheck=False, inline="always")
def _insert(keys, gs, src, m, kn, gt, tag, sign):  # fmt: skip
    """Insert ``(kn, gt)`` into the ranked row ``m`` (it beats the last entry): ``sign`` 1 for
    larger keys first, -1 for smaller first, ties by smaller ``g``. Returns the new last key."""
    j = keys.shape[1] - 1
    while j > 0 and (
        sign * kn > sign * keys[m, j - 1] or (kn == keys[m, j - 1] and gt < gs[m, j - 1])
    ):
        keys[m, j] = keys[m, j - 1]
        gs[m, j] = gs[m, j - 1]
        src[m, j] = src[m, j - 1]
        j -= 1
    keys[m, j] = kn
    gs[m, j] = gt
    src[m, j] = tag
    return keys[m, keys.shape[1] - 1]


@numba.njit(cache=True, nogil=True, boundscheck=False)
def _follow(lo, hi, src, win):  # fmt: skip
    """Reorder rows ``win[m, :, :]`` (raw bits) of neurons ``lo:hi`` by ``src[m]``."""
    k = src.shape[1]
    tmp = np.empty(win.shape[1:], win.dtype)
    for m in range(lo, hi):
        moved = False
        for j in range(k):
            moved |= src[m, j] != j
        if not moved:
            continue
        tmp[:] = win[m]
        for j in range(k):
            if src[m, j] >= 0 and src[m, j] != j:
                win[m, j] = tmp[src[m, j]]


@numba.njit(cache=True, nogil=True, boundscheck=False)
def windows(acts, rows, lengths, neurons, ctx_len):  # fmt: skip
    """``[ctx_len, M]`` float32: column ``i`` is ``acts[rows[i], :, neurons[i]]``, zero past the
    row's length. Entries sorted by ``(row, neuron)`` read nearby addresses: pass them so."""
    m = rows.shape[0]
    out = np.zeros((ctx_len, m), np.float32)
    i = 0
    while i < m:
        r = rows[i]
        e = i
        while e < m and rows[e] == r:
            e += 1
        for q in range(lengths[r]):
            for c in range(i, e):
                out[q, c] = acts[r, q, neurons[c]]
        i = e
    return out


@functools.cache
def _pool(n: int) -> concurrent.futures.ThreadPoolExecutor:
    return concurrent.futures.ThreadPoolExecutor(n, thread_name_prefix="atlas-reduce")


def run(
    n_threads: int,
    acts: np.ndarray,
    rows: np.ndarray,
    pos: np.ndarray,
    order: np.ndarray,
    g: np.ndarray,
    prio: np.ndarray,
    threshold: float,
    table: np.ndarray,
    shift: int,
    st: dict[str, np.ndarray],
) -> dict[str, np.ndarray]:
    """Fold ``acts [B, T, d]`` (float32) at tokens ``(rows, pos)`` into ``st`` (in place).

    ``st`` holds writable numpy views of the state entries :data:`STATE`, ``hist`` and the
    example windows ``top_acts``/``bot_acts`` as raw bits (int16). Kept examples' windows are
    moved along; the caller fills those of new ones (``src < 0``). Returns the batch's float64
    sums ``s1`` .. ``s4`` (of ``x`` .. ``x^4``) and the ``[d, k]`` ``top_src``/``bot_src``.
    """
    d = acts.shape[2]
    k = st["top_key"].shape[1]
    nb = st["hist"].shape[1]
    r = st["samp_h"].shape[1]
    out = {f"s{i}": np.zeros(d) for i in range(1, 5)}
    out["nan"] = np.zeros(d, np.int64)
    for side in ("top", "bot"):
        out[f"{side}_src"] = np.ascontiguousarray(np.broadcast_to(np.arange(k), (d, k)))
    was_nan = np.isnan(st["min"]) | np.isnan(st["max"])
    # bin-major (a row's neurons fall in a few bins), int32, count and threshold side by side
    # int16 when a batch's counts fit (the table then fits a core's L2 cache for d = 2048)
    small = rows.shape[0] < SMALL_BATCH
    ctype, pshift = (np.int16, 48) if small else (np.int32, 32)
    cells = np.zeros((nb, d, 2), dtype=ctype)
    cells[..., 1] = (st["samp_h"][:, r - 1] >> pshift).astype(ctype).reshape(d, nb).T
    args: tuple[Any, ...] = (
        acts, acts.view(np.int32), rows, pos, order, g, prio, np.float32(threshold), table,
        shift, out["s1"], out["s2"], out["s3"], out["s4"], st["min"], st["max"], out["nan"],
        st["n_pos"], st["n_thr"], cells, pshift, st["top_key"], st["top_g"], out["top_src"],
        st["top_acts"], st["bot_key"], st["bot_g"], out["bot_src"], st["bot_acts"], st["samp_h"],
        st["samp_g"], st["samp_v"],
    )  # fmt: skip
    blocks = np.linspace(0, d, max(1, n_threads) + 1).round().astype(np.int64)
    spans = [(int(a), int(b)) for a, b in itertools.pairwise(blocks) if b > a]
    if len(spans) == 1:
        _block(*spans[0], *args)
    else:
        jobs = [_pool(len(spans)).submit(_block, a, b, *args) for a, b in spans]
        for j in jobs:
            j.result()
    st["hist"] += cells[..., 0].T.astype(np.int64)
    nan = (out.pop("nan") > 0) | was_nan
    st["min"][nan] = np.nan  # torch.minimum / maximum propagate NaN
    st["max"][nan] = np.nan
    return out
