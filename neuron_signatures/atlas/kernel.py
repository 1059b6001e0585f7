"""The CPU reduction as one compiled pass (numba): the same state as :func:`.reduce.update`.

On a CPU the torch reduction is some forty full passes over a batch's ``[N, d]`` activations
(casts, boolean sums, gathers, sorts) and cost as much as the model's forward. Here the tokens
are read in groups of :data:`G` rows, once, and folded into everything:

1. float64 sums of ``(x - c)`` .. ``(x - c)^4`` over finite values about the caller's pivots
   ``c`` (made exact digits by the caller, as in torch: :mod:`.exact`), the count of non-finite
   values, ``n_pos`` and ``n_thr``: one pass over the accumulators per group of four tokens (a
   quarter of the loads and stores of one pass per token; the sums' rounding differs from
   torch's, within float64 rounding of the centered sums);
2. ``min`` and ``max`` kept as int32 order keys (:func:`.ranking.order_key`: -0.0 < +0.0, NaN beyond
   +-inf, the order of the ranked lists; the torch path and ``merge`` use the same rule), in
   the same vectorised loop that tests the group's extreme keys against the k-th keys of the
   top-k and bottom-k lists;
3. the histogram: the bin is arithmetic on the float bits (:func:`.bins.block_affine`, equal to
   the block table), counted in a ``(bin, neuron)`` table of int64 words whose low half is the
   count and whose high half holds each reservoir's threshold (the top 32 bits of its ``r``-th
   priority, a conservative filter); int32 words of 16-bit halves when a batch has < 2^15
   tokens: one load and one store count a value and test it;
4. the interval reservoirs by insertion: a token enters a ``(neuron, bin)`` reservoir iff its
   priority (its hash salted by the neuron, :mod:`.priority`, computed here per entry) is below
   the reservoir's ``r``-th, so the result is the bottom-r set that :func:`.reduce._sample`
   keeps;
5. the top-k and bottom-k lists by insertion, ordered by ``(order key, g ascending)`` exactly as
   :func:`.ranking.rank_union` orders them; ``src`` records where each kept entry came from (its
   old slot ``j``, or ``-1 - t`` for the batch's token ``t``) so that the caller gathers windows.

Steps 4 and 5 test a chunk of flags in a vectorised loop and only walk it when some are set
(rare once lists and reservoirs are full). Neurons are cut
into tiles of :data:`TILE` (their histogram words contiguous, in a core's L2 cache) and tiles are
split over threads (the GIL is released); each neuron is handled by one
thread in a fixed token order, so results depend neither on the thread count nor on the tile
size. Everything but the float64 sums is an exact selection or count, bit-identical to the torch
path; the sums are added in another order than torch's (equal to float64 rounding).
"""

from __future__ import annotations

import concurrent.futures
import functools
import itertools
import math
import sys
from typing import Any

import numba
import numpy as np
import torch

from . import bins
from .exact import SPLIT
from .ranking import key_value, order_key

if sys.byteorder != "little":  # the histogram's words (see run): kernel_available() says no
    raise ImportError("the compiled atlas pass needs a little-endian CPU")
_FLIP = np.int32(0x7FFFFFFF)
I32_MIN, I32_MAX = -(2**31), 2**31 - 1
SMALL_BATCH = 2**15  # batches of fewer tokens count in int16
G = 4  # tokens folded into the statistics per pass over their accumulators
TILE = 512  # neurons whose histogram words (bin-major within the tile) stay in cache
CHUNK = 32  # neurons tested together for candidates (a row has few: most chunks are skipped)
STATE: tuple[str, ...] = ("min", "max", "n_pos", "n_thr", "top_key", "top_g", "bot_key")
STATE += ("bot_g", "samp_h", "samp_g", "samp_v", "salt")
_TOP = np.uint64(2**63)
_M1, _M2 = np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB)


@numba.njit(cache=True, nogil=True, boundscheck=False)
def _block(
    lo, hi, cells, acts, bits, rows, pos, order, g, prio, thr, boff, s,
    s1, s2, s3, s4, mn, mx, npos, nthr, pshift,
    tkey, tg, tsrc, tacts, bkey, bg, bsrc, bacts, rh, rg, rv, cv, nfin, salt,
):  # fmt: skip
    """Fold the tokens ``order`` into neurons ``lo:hi`` (see the module docstring), whose
    histogram cells are ``cells [bins, T]`` (words: count in the low half, threshold above)."""
    w = hi - lo
    k = tkey.shape[1]
    a1, a2, a8, a9 = s1[lo:hi], s2[lo:hi], s3[lo:hi], s4[lo:hi]
    a3, a4, a6, a7 = mn[lo:hi], mx[lo:hi], npos[lo:hi], nthr[lo:hi]
    cp, a5, sl = cv[lo:hi], nfin[lo:hi], salt[lo:hi]
    prn = np.empty(w, np.int64)  # one token's salted priorities
    rank = np.empty((2, w), np.int64)  # the lists' k-th keys (top, bottom)
    rank[0] = tkey[lo:hi, k - 1]
    rank[1] = bkey[lo:hi, k - 1]
    t32 = np.maximum(rank[0], I32_MIN).astype(np.int32)  # as int32 bounds: a superset test
    b32 = np.minimum(rank[1], I32_MAX).astype(np.int32)
    cell = np.empty(w, np.int64)  # flat index of the (bin, neuron) count in cells
    flag = np.empty(w, np.int32)
    cand = np.empty(w + 1, np.int64)
    nt = order.shape[0]
    i0 = 0
    while i0 < nt:
        gs = G if nt - i0 >= G else 1
        if gs == G:
            t0, t1, t2, t3 = order[i0], order[i0 + 1], order[i0 + 2], order[i0 + 3]
            x0, b0 = acts[rows[t0], pos[t0], lo:hi], bits[rows[t0], pos[t0], lo:hi]
            x1, b1 = acts[rows[t1], pos[t1], lo:hi], bits[rows[t1], pos[t1], lo:hi]
            x2, b2 = acts[rows[t2], pos[t2], lo:hi], bits[rows[t2], pos[t2], lo:hi]
            x3, b3 = acts[rows[t3], pos[t3], lo:hi], bits[rows[t3], pos[t3], lo:hi]
            # 1. statistics of four tokens per pass over the accumulators
            for n in range(w):
                v0, v1 = _centered(x0[n], cp[n]), _centered(x1[n], cp[n])
                v2, v3 = _centered(x2[n], cp[n]), _centered(x3[n], cp[n])
                a1[n] += (v0 + v1) + (v2 + v3)
                q0, q1, q2, q3 = v0 * v0, v1 * v1, v2 * v2, v3 * v3
                a2[n] += (q0 + q1) + (q2 + q3)
                a8[n] += (q0 * v0 + q1 * v1) + (q2 * v2 + q3 * v3)
                a9[n] += (q0 * q0 + q1 * q1) + (q2 * q2 + q3 * q3)
            for n in range(w):
                a5[n] += _bad(x0[n]) + _bad(x1[n]) + _bad(x2[n]) + _bad(x3[n])
            for n in range(w):
                a6[n] += (x0[n] > 0) + (x1[n] > 0) + (x2[n] > 0) + (x3[n] > 0)
            for n in range(w):
                a7[n] += (x0[n] > thr) + (x1[n] > thr) + (x2[n] > thr) + (x3[n] > thr)
            # min and max as order keys (-0.0 < +0.0, NaN beyond +-inf), and the top-k and
            # bottom-k candidates: the group's extreme keys against the int32 k-th keys
            for n in range(w):
                k0, k1, k2, k3 = _key(b0[n]), _key(b1[n]), _key(b2[n]), _key(b3[n])
                u01, u23 = k0 if k0 > k1 else k1, k2 if k2 > k3 else k3
                u = u01 if u01 > u23 else u23
                l01, l23 = k0 if k0 < k1 else k1, k2 if k2 < k3 else k3
                low = l01 if l01 < l23 else l23
                a3[n] = low if low < a3[n] else a3[n]
                a4[n] = u if u > a4[n] else a4[n]
                flag[n] = np.int32(u >= t32[n]) | np.int32(low <= b32[n])
        else:  # the batch's last tokens, one at a time
            t0 = order[i0]
            x0, b0 = acts[rows[t0], pos[t0], lo:hi], bits[rows[t0], pos[t0], lo:hi]
            for n in range(w):
                v = _centered(x0[n], cp[n])
                a1[n] += v
                q = v * v
                a2[n] += q
                a8[n] += q * v
                a9[n] += q * q
            for n in range(w):
                a5[n] += _bad(x0[n])
            for n in range(w):
                a6[n] += x0[n] > 0
            for n in range(w):
                a7[n] += x0[n] > thr
            for n in range(w):
                k0 = _key(b0[n])
                a3[n] = k0 if k0 < a3[n] else a3[n]
                a4[n] = k0 if k0 > a4[n] else a4[n]
                flag[n] = np.int32(k0 >= t32[n]) | np.int32(k0 <= b32[n])
        # 4. top-k and bottom-k (candidates settled exactly, ties at the k-th key by g)
        c = _compact(flag, cand)
        for q in range(c):
            n = cand[q]
            for j in range(gs):  # only the group's tokens that pass a bound themselves
                t = order[i0 + j]
                kb = _key(bits[rows[t], pos[t], lo + n])
                if kb >= t32[n] or kb <= b32[n]:
                    _rank(lo + n, n, kb, g[t], -1 - t, rank, t32, b32, tkey, tg, tsrc, bkey, bg,
                          bsrc)  # fmt: skip
        # 2. histogram, and 3. the reservoir test on the same word
        for j in range(gs):
            t = order[i0 + j]
            _histogram(lo, acts[rows[t], pos[t], lo:hi], bits[rows[t], pos[t], lo:hi], boff, s,
                       prio[t], g[t], pshift, cells, cell, flag, cand, rh, rg, rv, sl,
                       prn)  # fmt: skip
        i0 += gs
    # 5. the kept examples' windows follow their entries (new ones are filled by the caller)
    _follow(lo, hi, tsrc, tacts)
    _follow(lo, hi, bsrc, bacts)


@numba.njit(cache=True, nogil=True, boundscheck=False)
def _tiles(first, last, cells, acts, *rest):  # fmt: skip
    """:func:`_block` over the neuron tiles ``first:last`` (``cells [tiles, bins, T]``)."""
    tw = cells.shape[2]
    for ti in range(first, last):
        lo = ti * tw
        _block(lo, min(lo + tw, acts.shape[2]), cells[ti], acts, *rest)


@numba.njit(cache=True, nogil=True, boundscheck=False, inline="always")
def _centered(x, c):  # fmt: skip
    """float64 ``x - c`` (exact), 0 where ``x`` is not finite."""
    v = np.float64(x)
    return v - c if np.isfinite(v) else 0.0


@numba.njit(cache=True, nogil=True, boundscheck=False, inline="always")
def _bad(x):  # fmt: skip
    """1 where float32 ``x`` is NaN or +-inf."""
    return np.int32(not np.isfinite(x))


@numba.njit(cache=True, nogil=True, boundscheck=False, inline="always")
def _salted(h, s):  # fmt: skip
    """:func:`.priority.salted_priority` of one token hash ``h`` and one salt ``s`` (int64)."""
    z = np.uint64(h ^ s)
    z = (z ^ (z >> np.uint64(30))) * _M1
    z = (z ^ (z >> np.uint64(27))) * _M2
    z = z ^ (z >> np.uint64(31))
    return np.int64(z ^ _TOP)


@numba.njit(cache=True, nogil=True, boundscheck=False, inline="always")
def _key(b):  # fmt: skip
    """int32 order key of float32 bits ``b``: integer order = float order."""
    return b ^ ((b >> np.int32(31)) & _FLIP)


@numba.njit(cache=True, nogil=True, boundscheck=False, inline="always")
def _compact(flag, cand):  # fmt: skip
    """Write the indices of nonzero ``flag`` entries to ``cand``; return their count. A
    vectorised test per chunk first: most chunks have none."""
    w = flag.shape[0]
    c = 0
    for c0 in range(0, w, CHUNK):
        c1 = min(c0 + CHUNK, w)
        hit = np.int32(0)
        for n in range(c0, c1):
            hit |= flag[n]
        if hit:
            for n in range(c0, c1):
                cand[c] = n
                c += flag[n]
    return c


@numba.njit(cache=True, nogil=True, boundscheck=False, inline="always")
def _rank(m, n, kb, gt, tag, rank, t32, b32, tkey, tg, tsrc, bkey, bg, bsrc):  # fmt: skip
    """Offer key ``kb`` of token ``gt`` to neuron ``m``'s top-k and bottom-k lists."""
    k = tkey.shape[1]
    kn = np.int64(kb)
    if kn > rank[0, n] or (kn == rank[0, n] and gt < tg[m, k - 1]):
        rank[0, n] = _insert(tkey, tg, tsrc, m, kn, gt, tag, 1)
        t32[n] = max(rank[0, n], I32_MIN)
    if kn < rank[1, n] or (kn == rank[1, n] and gt < bg[m, k - 1]):
        rank[1, n] = _insert(bkey, bg, bsrc, m, kn, gt, tag, -1)
        b32[n] = min(rank[1, n], I32_MAX)


@numba.njit(cache=True, nogil=True, boundscheck=False, inline="always")
def _histogram(
    lo, x, xb, boff, s, th, gt, pshift, cells, cell, flag, cand, rh, rg, rv, sl, prn,
):  # fmt: skip
    """Count one token's row ``x`` (bits ``xb``) of neurons ``lo:`` and offer it to the
    reservoirs its cells' thresholds let through (token hash ``th``, salts ``sl``, token
    ``gt``; ``prn`` receives the salted priorities)."""
    nb, tw = cells.shape[0], cells.shape[1]
    r = rh.shape[1]
    w = x.shape[0]
    cf = cells.reshape(-1)  # one word per cell: one load and one store count and test
    half = 64 - pshift  # the threshold's shift in a word: its bits (16 or 32)
    for n in range(w):  # the bin: arithmetic on the bits (see .bins.block_affine)
        slot = min(max(((xb[n] >> 22) & 511) - boff, 0), s - 1)
        cell[n] = (s + (slot ^ (xb[n] >> 31))) * tw + n
    for n in range(w):
        prn[n] = _salted(th, sl[n])
    for n in range(w):
        v = cf[cell[n]] + 1  # the count is below 2^15 (2^31): no carry into the threshold
        cf[cell[n]] = v
        # top bits: the reservoir filter runs on the threshold's integer type
        flag[n] = (prn[n] >> pshift) <= (v >> half)
    for q in range(_compact(flag, cand)):
        n = cand[q]
        pr = prn[n]
        grp = (lo + n) * nb + cell[n] // tw
        if pr >= rh[grp, r - 1]:  # the truncated test is a superset
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
        top = rh[grp, r - 1] >> pshift  # the new threshold, above the count
        cf[cell[n]] = (cf[cell[n]] & ((1 << half) - 1)) | (top << half)


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
    """Move rows ``win[m, :, :]`` (raw bits) of neurons ``lo:hi`` to their new slots: slot ``j``
    takes old slot ``src[m, j]``. Kept entries only move down a list (``src[m, j] <= j``, their
    order unchanged), so copying from the last slot up needs no scratch copy."""
    k = src.shape[1]
    for m in range(lo, hi):
        for j in range(k - 1, -1, -1):
            f = src[m, j]
            if f >= 0 and f != j:
                for q in range(win.shape[2]):  # a loop: no slice views to build
                    win[m, j, q] = win[m, f, q]


@numba.njit(cache=True, nogil=True, boundscheck=False)
def windows(acts, rows, lengths, neurons, ctx_len):  # fmt: skip
    """``[M, ctx_len]`` float32: row ``i`` is ``acts[rows[i], :, neurons[i]]``, zero past the
    row's length. Entries sorted by ``(row, neuron)`` read nearby addresses: pass them so."""
    m = rows.shape[0]
    out = np.zeros((m, ctx_len), np.float32)
    i = 0
    while i < m:
        r = rows[i]
        e = i
        while e < m and rows[e] == r:
            e += 1
        for q in range(lengths[r]):
            for c in range(i, e):
                out[c, q] = acts[r, q, neurons[c]]
        i = e
    return out


@numba.njit(cache=True, nogil=True, boundscheck=False)
def put_windows(dest, neurons, slots, win):  # fmt: skip
    """``dest[neurons[i], slots[i], :] = win[i]`` (raw bits of the example windows; each
    ``(neuron, slot)`` at most once), written in ``dest``'s order: sequential stores."""
    k = dest.shape[1]
    at = np.full(dest.shape[0] * k, -1, np.int64)
    for i in range(neurons.shape[0]):
        at[neurons[i] * k + slots[i]] = i
    flat = dest.reshape(-1, dest.shape[2])
    for c in range(at.shape[0]):
        e = at[c]
        if e >= 0:
            for q in range(win.shape[1]):
                flat[c, q] = win[e, q]


@numba.njit(cache=True, nogil=True, boundscheck=False)
def add_power_sums(c, sums, d1, d2, d3, d4, bits):  # fmt: skip
    """:func:`.reduce.add_sums` in one compiled pass: the digits of :func:`.exact.power_digits`
    of pivots ``c [d]`` and centered sums ``sums [5, d]`` added to the totals ``d1`` .. ``d4``
    (``[d, D_k]`` int64, in place) and carried. The same float64 operations as the torch code
    (Veltkamp halves, ``C(k, j) c^(k-j) * half``, digits by floor division by powers of two)
    give the same integers, and a carried total has one form: the same bytes."""
    d = c.shape[0]
    coefs, hi, lo = np.empty(4), np.empty(4), np.empty(4)
    for n in range(d):
        cn = c[n]
        for j in range(4):
            sp = sums[j, n] * SPLIT
            hi[j] = sp - (sp - sums[j, n])
            lo[j] = sums[j, n] - hi[j]
        for k in range(1, 5):
            acc = d1 if k == 1 else d2 if k == 2 else d3 if k == 3 else d4
            for j in range(k):
                coefs[j] = _COMB[k, j] * cn ** (k - j)
            _add_digits(acc, n, sums[k, n], bits[k - 1])
            for j in range(k):
                _add_digits(acc, n, coefs[j] * hi[j], bits[k - 1])
                _add_digits(acc, n, coefs[j] * lo[j], bits[k - 1])
            for i in range(acc.shape[1] - 1, 0, -1):  # carry: all but the top digit in [0, 2^32)
                carry = acc[n, i] >> 32
                acc[n, i] -= carry << 32
                acc[n, i - 1] += carry


@numba.njit(cache=True, nogil=True, boundscheck=False, inline="always")
def _add_digits(acc, n, v, bits):  # fmt: skip
    """Add the digits of ``trunc(v * 2^bits)`` (:func:`.exact.fixed_digits`) to row ``n``: the
    same floor divisions, from the highest digit ``v`` reaches down to the last nonzero rest (a
    float64 spans at most three digits; the others are zeros, skipped)."""
    nd = acc.shape[1]
    rest = abs(v) * 2.0**bits
    if rest == 0.0:
        return
    sign = np.float64(1.0) if v > 0 else np.float64(-1.0)
    top = min((math.frexp(rest)[1] - 1) // 32, nd - 1)  # 2^(32 top) <= rest, or the top digit
    for i in range(top, 0, -1):
        p = 2.0 ** (32 * i)
        q = np.floor(rest / p)
        acc[n, nd - 1 - i] += np.int64(q * sign)
        rest = rest - q * p
        if rest == 0.0:
            return
    acc[n, nd - 1] += np.int64(np.floor(rest) * sign)


_COMB = np.array([[1, 0, 0, 0], [1, 1, 0, 0], [1, 2, 0, 0], [1, 3, 3, 0], [1, 4, 6, 4]], np.float64)


@functools.cache
def _pool(n: int) -> concurrent.futures.ThreadPoolExecutor:
    return concurrent.futures.ThreadPoolExecutor(n, thread_name_prefix="atlas-reduce")


def _keys(v: np.ndarray) -> np.ndarray:
    """int32 order keys of float32 ``v`` (:func:`.ranking.order_key`)."""
    return order_key(torch.from_numpy(v)).numpy().astype(np.int32)


_INF_KEYS = _keys(np.array([-np.inf, np.inf], np.float32))  # NaN keys lie beyond these


def run(
    n_threads: int,
    acts: np.ndarray,
    rows: np.ndarray,
    pos: np.ndarray,
    order: np.ndarray,
    g: np.ndarray,
    prio: np.ndarray,
    threshold: float,
    hist_exp: tuple[int, int],
    st: dict[str, np.ndarray],
    pivots: np.ndarray,
) -> dict[str, np.ndarray]:
    """Fold ``acts [B, T, d]`` (float32) at tokens ``(rows, pos)`` into ``st`` (in place).

    ``st`` holds writable numpy views of the state entries :data:`STATE`, ``hist`` and the
    example windows ``top_acts``/``bot_acts`` as raw bits (int16); ``prio`` holds the tokens'
    hashes. Kept examples' windows are moved along; the caller fills those of new ones (``src <
    0``). Returns the batch's float64 sums ``s1`` .. ``s4`` (of ``(x - c)`` .. ``(x - c)^4``
    over finite values, ``c = pivots [d]``), ``nonfinite [d]`` and the ``[d, k]``
    ``top_src``/``bot_src``.
    """
    d = acts.shape[2]
    k = st["top_key"].shape[1]
    nb = st["hist"].shape[1]
    r = st["samp_h"].shape[1]
    out = {f"s{i}": np.zeros(d) for i in range(1, 5)}
    for name in ("npos", "nthr", "nonfinite"):  # this batch's counts (fewer bytes than int64)
        out[name] = np.zeros(d, np.int32)
    for side in ("top", "bot"):
        out[f"{side}_src"] = np.tile(np.arange(k), (d, 1))  # writable (d = 1 too)
    was_nan = np.isnan(st["min"]) | np.isnan(st["max"])
    lo_key, hi_key = _keys(st["min"]), _keys(st["max"])
    # bin-major (a row's neurons fall in a few bins), count and threshold side by side in one
    # word (little-endian: the count is the low half); int16 halves when a batch's counts fit
    small = rows.shape[0] < SMALL_BATCH
    ctype, wide, pshift = (np.int16, np.int32, 48) if small else (np.int32, np.int64, 32)
    tiles = -(-d // TILE)
    cells = np.zeros((tiles, nb, TILE, 2), dtype=ctype)
    thresh = np.zeros((tiles * TILE, nb), dtype=ctype)
    thresh[:d] = (st["samp_h"][:, r - 1] >> pshift).astype(ctype).reshape(d, nb)
    cells[..., 1] = thresh.reshape(tiles, TILE, nb).transpose(0, 2, 1)
    words = cells.view(wide)[..., 0]  # [tiles, nb, TILE]
    args: tuple[Any, ...] = (
        words, acts, acts.view(np.int32), rows, pos, order, g, prio, np.float32(threshold),
        *bins.block_affine(*hist_exp), out["s1"], out["s2"], out["s3"], out["s4"], lo_key,
        hi_key, out["npos"], out["nthr"], pshift, st["top_key"], st["top_g"],
        out["top_src"], st["top_acts"], st["bot_key"], st["bot_g"], out["bot_src"],
        st["bot_acts"], st["samp_h"], st["samp_g"], st["samp_v"],
        np.ascontiguousarray(pivots, np.float64), out["nonfinite"], st["salt"],
    )  # fmt: skip
    blocks = np.linspace(0, tiles, max(1, n_threads) + 1).round().astype(np.int64)
    spans = [(int(a), int(b)) for a, b in itertools.pairwise(blocks) if b > a]
    if len(spans) == 1:
        _tiles(*spans[0], *args)
    else:
        jobs = [_pool(len(spans)).submit(_tiles, a, b, *args) for a, b in spans]
        for j in jobs:
            j.result()
    st["hist"] += cells[..., 0].transpose(0, 2, 1).reshape(-1, nb)[:d]
    st["n_pos"] += out.pop("npos")
    st["n_thr"] += out.pop("nthr")
    nan = was_nan | (lo_key < _INF_KEYS[0]) | (hi_key > _INF_KEYS[1])
    for name, key in (("min", lo_key), ("max", hi_key)):  # NaN anywhere makes both NaN
        value = key_value(torch.from_numpy(key.astype(np.int64))).numpy()
        st[name][:] = np.where(nan, np.nan, value)
    return out
