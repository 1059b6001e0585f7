"""The CPU reduction as one compiled pass (numba): the same state as :func:`.reduce.update`.

On a CPU the torch reduction is some forty full passes over a batch's ``[N, d]`` activations
(casts, boolean sums, gathers, sorts) and cost as much as the model's forward. Here the tokens
are read in groups of :data:`G` rows, once (a bf16 batch as its raw bits: see :func:`run`; the
next group's rows are prefetched), and folded into everything:

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
   tokens: one load and one store count a value, and one signed comparison with the
   priority's top bits, placed as in a word, tests it;
4. the interval reservoirs by insertion: a token enters a ``(neuron, bin)`` reservoir iff its
   priority (its hash salted by the neuron, :mod:`.priority`, computed here per entry) is below
   the reservoir's ``r``-th, so the result is the bottom-r set that :func:`.reduce._sample`
   keeps;
5. the top-k and bottom-k lists by insertion, ordered by ``(order key, g ascending)`` exactly as
   :func:`.ranking.rank_union` orders them; ``src`` records where each kept entry came from (its
   old slot ``j``, or ``-1 - t`` for the batch's token ``t``): at the end of a tile, kept
   windows move along and new ones are gathered from the tile's columns while they are in cache
   (:func:`_gather`).

Steps 4 and 5 compact their candidates without branches (a store and an add per neuron: the
branch per chunk of flags mispredicted more than it saved). A token's reservoir candidates wait
for the next token's count while their rows are prefetched (each insertion's first load used to
be a cache miss, and a branch depends on it). Per token, arrays are indexed with unsigned
integers and never sliced (see :func:`_block`). Neurons are cut into tiles of :data:`TILE` (a
power of two; their histogram words contiguous, in a core's L2 cache) and tiles are split over
threads (the GIL is released); each neuron is handled by one thread in a fixed token order, so
results depend neither on the thread count nor on the tile size. Everything but the float64
sums is an exact selection or count, bit-identical to the torch path; the sums are added in
another order than torch's (equal to float64 rounding).
"""

from __future__ import annotations

import concurrent.futures
import functools
import itertools
import math
import sys
import threading
from typing import Any

import numba
import numpy as np
import torch
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

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
STATE: tuple[str, ...] = ("min", "max", "n_pos", "n_thr", "top_key", "top_g", "bot_key")
STATE += ("bot_g", "samp_h", "samp_g", "samp_v", "salt")
_TOP = np.uint64(2**63)
_M1, _M2 = np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB)
U = np.uint64  # an index type without wrap-around tests (see _block)


@numba.njit(cache=True, nogil=True, boundscheck=False)
def _block(
    lo, hi, cells, raw, tok, order, g, prio, thr, boff, s,
    s1, s2, s3, s4, mn, mx, npos, nthr, pshift,
    lkey, lg, lsrc, tacts, bacts, rh, rg, rv, cv, nfin, salt, rows, rowlen, stage, cur,
):  # fmt: skip
    """Fold the tokens ``order`` (rows ``tok`` of the raw bits ``raw [B * T, d]``, see
    :func:`run`) into neurons ``lo:hi`` (see the module docstring), whose histogram cells are
    ``cells [bins, T]`` (words: count in the low half, threshold above).

    Per token, arrays are indexed with unsigned integers, never sliced: a slice is a view whose
    reference count is two atomic operations (and they were a sixth of the time of two layers
    folded at once); a signed index is tested for wrap-around, which stops the vectorisation.
    """
    w = hi - lo
    k = lkey.shape[2]
    sh = _shift(raw)  # bf16 bits are the top half of a float32's
    ul = U(lo)
    a1, a2, a8, a9 = s1[lo:hi], s2[lo:hi], s3[lo:hi], s4[lo:hi]
    a3, a4, a6, a7 = mn[lo:hi], mx[lo:hi], npos[lo:hi], nthr[lo:hi]
    cp, a5, sl = cv[lo:hi], nfin[lo:hi], salt[lo:hi]
    cf = cells.reshape(-1)  # one word per cell: one load and one store count and test
    rank = np.empty((2, w), np.int64)  # the lists' k-th keys (top, bottom)
    rank[0] = lkey[0, lo:hi, k - 1]
    rank[1] = lkey[1, lo:hi, k - 1]
    t32 = np.maximum(rank[0], I32_MIN).astype(np.int32)  # as int32 bounds: a superset test
    b32 = np.minimum(rank[1], I32_MAX).astype(np.int32)
    flag = np.empty(w, np.int32)
    cand = np.empty(w + 1, np.int64)
    # two tokens' buffers of w entries each (see 2. below): per neuron, the flat index of its
    # (bin, neuron) count in cells and its priority's top bits (placed as in a word); the
    # reservoir candidates
    cell = np.empty(2 * w, np.int64)
    prn = np.empty(2 * w, np.int64)
    rcand = np.empty(2 * w, np.int64)
    held, hc, hb = -1, 0, U(0)  # the token whose reservoir candidates wait, their buffer
    tshift = 0  # log2 of the tile width (a power of two): a cell's bin is a shift
    while (1 << tshift) < cells.shape[1]:
        tshift += 1
    nb, tw, r = cells.shape[0], cells.shape[1], rh.shape[1]
    half = 64 - pshift  # the threshold's shift in a word: its bits (16 or 32)
    nt = order.shape[0]
    i0 = 0
    while i0 < nt:
        gs = G if nt - i0 >= G else 1
        if gs == G:
            if i0 + 2 * G <= nt:  # the next group's rows, from memory while this one is folded
                for j in range(G):
                    rn = U(tok[order[i0 + G + j]])
                    for n in range(0, w, 64 // raw.itemsize):
                        _prefetch(raw, rn, ul + U(n))
            r0, r1 = U(tok[order[i0]]), U(tok[order[i0 + 1]])
            r2, r3 = U(tok[order[i0 + 2]]), U(tok[order[i0 + 3]])
            # 1. statistics of four tokens per pass over the accumulators
            for n in range(w):
                i = ul + U(n)
                x0, x1 = _val(raw[r0, i], sh), _val(raw[r1, i], sh)
                x2, x3 = _val(raw[r2, i], sh), _val(raw[r3, i], sh)
                v0, v1 = _centered(x0, cp[n]), _centered(x1, cp[n])
                v2, v3 = _centered(x2, cp[n]), _centered(x3, cp[n])
                a1[n] += (v0 + v1) + (v2 + v3)
                q0, q1, q2, q3 = v0 * v0, v1 * v1, v2 * v2, v3 * v3
                a2[n] += (q0 + q1) + (q2 + q3)
                a8[n] += (q0 * v0 + q1 * v1) + (q2 * v2 + q3 * v3)
                a9[n] += (q0 * q0 + q1 * q1) + (q2 * q2 + q3 * q3)
            for n in range(w):
                i = ul + U(n)
                x0, x1 = _val(raw[r0, i], sh), _val(raw[r1, i], sh)
                x2, x3 = _val(raw[r2, i], sh), _val(raw[r3, i], sh)
                a5[n] += _bad(x0) + _bad(x1) + _bad(x2) + _bad(x3)
            for n in range(w):
                i = ul + U(n)
                x0, x1 = _val(raw[r0, i], sh), _val(raw[r1, i], sh)
                x2, x3 = _val(raw[r2, i], sh), _val(raw[r3, i], sh)
                a6[n] += (x0 > 0) + (x1 > 0) + (x2 > 0) + (x3 > 0)
            for n in range(w):
                i = ul + U(n)
                x0, x1 = _val(raw[r0, i], sh), _val(raw[r1, i], sh)
                x2, x3 = _val(raw[r2, i], sh), _val(raw[r3, i], sh)
                a7[n] += (x0 > thr) + (x1 > thr) + (x2 > thr) + (x3 > thr)
            # min and max as order keys (-0.0 < +0.0, NaN beyond +-inf), and the top-k and
            # bottom-k candidates: the group's extreme keys against the int32 k-th keys
            for n in range(w):
                i = ul + U(n)
                k0, k1 = _key(_b32(raw[r0, i], sh)), _key(_b32(raw[r1, i], sh))
                k2, k3 = _key(_b32(raw[r2, i], sh)), _key(_b32(raw[r3, i], sh))
                u01, u23 = k0 if k0 > k1 else k1, k2 if k2 > k3 else k3
                u = u01 if u01 > u23 else u23
                l01, l23 = k0 if k0 < k1 else k1, k2 if k2 < k3 else k3
                low = l01 if l01 < l23 else l23
                a3[n] = low if low < a3[n] else a3[n]
                a4[n] = u if u > a4[n] else a4[n]
                flag[n] = np.int32(u >= t32[n]) | np.int32(low <= b32[n])
        else:  # the batch's last tokens, one at a time
            r0 = U(tok[order[i0]])
            for n in range(w):
                v = _centered(_val(raw[r0, ul + U(n)], sh), cp[n])
                a1[n] += v
                q = v * v
                a2[n] += q
                a8[n] += q * v
                a9[n] += q * q
            for n in range(w):
                a5[n] += _bad(_val(raw[r0, ul + U(n)], sh))
            for n in range(w):
                a6[n] += _val(raw[r0, ul + U(n)], sh) > 0
            for n in range(w):
                a7[n] += _val(raw[r0, ul + U(n)], sh) > thr
            for n in range(w):
                k0 = _key(_b32(raw[r0, ul + U(n)], sh))
                a3[n] = k0 if k0 < a3[n] else a3[n]
                a4[n] = k0 if k0 > a4[n] else a4[n]
                flag[n] = np.int32(k0 >= t32[n]) | np.int32(k0 <= b32[n])
        # 4. top-k and bottom-k (candidates settled exactly, ties at the k-th key by g)
        # (written out here: arrays passed to a function, even inlined, are reference counted
        # on every call)
        c = _compact(flag, cand)
        for q in range(c):
            n = cand[q]
            m = lo + n
            for j in range(gs):  # only the group's tokens that pass a bound themselves
                t = order[i0 + j]
                kn = np.int64(_key(_b32(raw[U(tok[t]), ul + U(n)], sh)))
                if kn < t32[n] and kn > b32[n]:
                    continue
                gt = g[t]
                for side in range(2):  # top: larger keys first, bottom: smaller; ties by g
                    sg = 1 - 2 * side
                    if sg * kn < sg * rank[side, n] or (
                        kn == rank[side, n] and gt > lg[side, m, k - 1]
                    ):
                        continue
                    e = k - 1  # insert: it beats the last entry
                    while e > 0 and (
                        sg * kn > sg * lkey[side, m, e - 1]
                        or (kn == lkey[side, m, e - 1] and gt < lg[side, m, e - 1])
                    ):
                        lkey[side, m, e] = lkey[side, m, e - 1]
                        lg[side, m, e] = lg[side, m, e - 1]
                        lsrc[side, m, e] = lsrc[side, m, e - 1]
                        e -= 1
                    lkey[side, m, e], lg[side, m, e], lsrc[side, m, e] = kn, gt, -1 - t
                    rank[side, n] = lkey[side, m, k - 1]
                t32[n] = max(rank[0, n], I32_MIN)
                b32[n] = min(rank[1, n], I32_MAX)
        # 2. histogram, and 3. the reservoir test on the same word. A token's reservoir
        # candidates wait for the next token's count while their rows are fetched: that count
        # tests thresholds not yet lowered by them, a superset the insertion settles exactly.
        # (Written out here, as 4. is.) The batch's last group takes one more step: the wait of
        # its last token.
        for j in range(gs + (i0 + gs >= nt)):
            o = U(w) - hb  # the other buffer
            c = 0
            if j < gs:
                t = order[i0 + j]
                tr = U(tok[t])
                for n in range(w):  # the bin: arithmetic on the bits (see .bins.block_affine)
                    b = _b32(raw[tr, ul + U(n)], sh)
                    slot = min(max(((b >> 22) & 511) - boff, 0), s - 1)
                    cell[o + U(n)] = (s + (slot ^ (b >> 31))) * tw + n
                th = prio[t]
                for n in range(w):  # the priority's top bits in the threshold's place
                    prn[o + U(n)] = (_salted(th, sl[n]) >> pshift) << half
                for n in range(w):
                    i = U(cell[o + U(n)])
                    v = cf[i] + 1  # the count is below 2^15 (2^31): no carry into the threshold
                    cf[i] = v
                    rcand[o + U(c)] = n
                    # top bits <= threshold, as the count (>= 0, < 2^half) cannot tip it
                    c += prn[o + U(n)] <= v
                for q in range(c):  # start fetching the candidates' reservoir rows
                    n = rcand[o + U(q)]
                    grp = U((lo + n) * nb + (cell[o + U(n)] >> tshift))
                    _prefetch(rh, grp, 0)  # a row's two ends: it may span two lines
                    _prefetch(rh, grp, r - 1)
                    _prefetch(rg, grp, 0)
                    _prefetch(rg, grp, r - 1)
                    _prefetch(rv, grp, 0)
                    _prefetch(rv, grp, r - 1)
            if held >= 0:  # the waiting token enters the reservoirs that take it
                tr, gt, hh = U(tok[held]), g[held], prio[held]
                for q in range(hc):
                    n = rcand[hb + U(q)]
                    pr = _salted(hh, sl[n])
                    ci = U(cell[hb + U(n)])
                    grp = U((lo + n) * nb + (ci >> tshift))
                    if pr >= rh[grp, r - 1]:  # the truncated test is a superset
                        continue
                    e = r - 1
                    while e > 0 and pr < rh[grp, e - 1]:
                        rh[grp, e] = rh[grp, e - 1]
                        rg[grp, e] = rg[grp, e - 1]
                        rv[grp, e] = rv[grp, e - 1]
                        e -= 1
                    rh[grp, e], rg[grp, e], rv[grp, e] = pr, gt, _val(raw[tr, U(lo + n)], sh)
                    top = rh[grp, r - 1] >> pshift  # the new threshold, above the count
                    cf[ci] = (cf[ci] & ((1 << half) - 1)) | (top << half)
            held, hc, hb = (order[i0 + j] if j < gs else -1), c, o
        i0 += gs
    # 5. the kept examples' windows follow their entries; the new ones are gathered while the
    # tile's columns are still in cache
    _follow(lo, hi, lsrc[0], tacts)
    _follow(lo, hi, lsrc[1], bacts)
    return _gather(lo, hi, raw, rows, rowlen, lsrc, stage, cur)


@numba.njit(cache=True, nogil=True, boundscheck=False)
def _tiles(first, last, cur, cells, raw, *rest):  # fmt: skip
    """:func:`_block` over the neuron tiles ``first:last`` (``cells [tiles, bins, T]``), the
    new examples' windows in ``stage`` rows from ``cur`` on; returns how many."""
    tw = cells.shape[2]
    start = cur
    for ti in range(first, last):
        lo = ti * tw
        cur = _block(lo, min(lo + tw, raw.shape[1]), cells[ti], raw, *rest, cur)
    return cur - start


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
def _b32(x, sh):  # fmt: skip
    """The float32 bits (int32) of raw bits ``x``: itself (float32), or the top half (bf16)."""
    return np.int32(np.int32(x) << sh)


@numba.njit(cache=True, nogil=True, boundscheck=False, inline="always")
def _val(x, sh):  # fmt: skip
    """The float32 value of raw bits ``x`` (float32 or bf16: see :func:`_b32`)."""
    return _as_float(_b32(x, sh))


@intrinsic
def _shift(typingctx, raw):  # type: ignore[no-untyped-def]
    """The shift of :func:`_b32` for raw bits of ``raw``'s type: 16 for int16 (bf16), 0 for
    int32; a constant of the compiled code (an array's ``itemsize`` is read at run time)."""
    sh = 32 - raw.dtype.bitwidth

    def codegen(context, builder, sig, args):  # type: ignore[no-untyped-def]
        return context.get_constant(types.int32, sh)

    return types.int32(raw), codegen


@intrinsic
def _as_float(typingctx, b):  # type: ignore[no-untyped-def]
    """The float32 whose bits are the int32 ``b`` (a bit cast: NaN payloads and -0.0 kept)."""

    def codegen(context, builder, sig, args):  # type: ignore[no-untyped-def]
        return builder.bitcast(args[0], ir.FloatType())

    return (types.float32(types.int32), codegen) if b == types.int32 else None


@numba.njit(cache=True, nogil=True, boundscheck=False, inline="always")
def _key(b):  # fmt: skip
    """int32 order key of float32 bits ``b``: integer order = float order."""
    return b ^ ((b >> np.int32(31)) & _FLIP)


@numba.njit(cache=True, nogil=True, boundscheck=False, inline="always")
def _compact(flag, cand):  # fmt: skip
    """Write the indices of nonzero ``flag`` entries to ``cand``; return their count."""
    c = 0
    for n in range(flag.shape[0]):
        cand[c] = n
        c += flag[n]
    return c


@intrinsic
def _prefetch(typingctx, arr, i, j):  # type: ignore[no-untyped-def]
    """Hint the CPU to fetch ``arr[i, j]`` (2-d) into its caches (no fault, no result):
    ``llvm.prefetch`` for reading, high locality."""

    def codegen(context, builder, sig, args):  # type: ignore[no-untyped-def]
        aryty = sig.args[0]
        ary = context.make_array(aryty)(context, builder, args[0])
        ptr = cgutils.get_item_pointer(context, builder, aryty, ary, [args[1], args[2]])
        i32, byte = ir.IntType(32), ir.IntType(8).as_pointer()
        fnty = ir.FunctionType(ir.VoidType(), [byte, i32, i32, i32])
        fn = cgutils.get_or_insert_function(builder.module, fnty, "llvm.prefetch.p0")
        builder.call(fn, [builder.bitcast(ptr, byte), i32(0), i32(3), i32(1)])
        return context.get_dummy_value()

    return types.void(arr, i, j), codegen


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
def _gather(lo, hi, raw, rows, rowlen, lsrc, stage, cur):  # fmt: skip
    """Copy the values of the windows of the batch's tokens that entered the lists of neurons
    ``lo:hi`` (``lsrc < 0``) to ``stage`` rows ``cur`` on (zero past the window's length), and
    note each one's row in ``lsrc`` as ``-1 - row``; returns the next free row. Examples are
    taken by batch row (a counting sort): a row's columns are read while they are in cache."""
    sh = _shift(raw)
    k, nr, ctx = lsrc.shape[2], rowlen.shape[0], stage.shape[1]
    width = raw.shape[0] // nr  # raw [B * width, d]
    w = hi - lo
    start = np.zeros(nr + 1, np.int64)
    for side in range(2):
        for m in range(lo, hi):
            for j in range(k):
                f = lsrc[side, m, j]
                if f < 0:
                    start[rows[-1 - f] + 1] += 1
    for b in range(nr):
        start[b + 1] += start[b]
    ne = start[nr]
    ent = np.empty(ne, np.int64)  # (side, neuron, slot) of each, by batch row
    for side in range(2):
        for m in range(lo, hi):
            for j in range(k):
                f = lsrc[side, m, j]
                if f < 0:
                    b = rows[-1 - f]
                    ent[start[b]] = (side * w + m - lo) * k + j
                    start[b] += 1
    for e in range(ne):
        side, rest = divmod(ent[e], w * k)
        m, j = lo + rest // k, rest % k
        b = rows[-1 - lsrc[side, m, j]]
        at, n = U(b * width), U(m)
        for q in range(rowlen[b]):
            stage[cur + e, q] = _val(raw[at + U(q), n], sh)
        for q in range(rowlen[b], ctx):
            stage[cur + e, q] = 0.0
        lsrc[side, m, j] = -1 - (cur + e)
    return cur + ne


@numba.njit(cache=True, nogil=True, boundscheck=False)
def put_windows(dest, src, bits, first):  # fmt: skip
    """``dest[m, j] = bits[-1 - src[m, j] - first]`` where that row is in ``bits`` (raw bits of
    the new examples' windows, from stage row ``first`` on), in ``dest``'s order."""
    k = dest.shape[1]
    for m in range(dest.shape[0]):
        for j in range(k):
            e = -1 - src[m, j] - first
            if 0 <= e < bits.shape[0]:
                for q in range(bits.shape[1]):
                    dest[m, j, q] = bits[e, q]


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
    float64 spans at most three digits; the others are zeros, skipped). Powers of two come from
    tables (multiplying by ``2^-32i`` is dividing by ``2^32i``: exact, the same floats)."""
    nd = acc.shape[1]
    rest = abs(v) * math.ldexp(1.0, bits)
    if rest == 0.0:
        return
    sign = np.float64(1.0) if v > 0 else np.float64(-1.0)
    top = min((math.frexp(rest)[1] - 1) // 32, nd - 1)  # 2^(32 top) <= rest, or the top digit
    for i in range(top, 0, -1):
        q = np.floor(rest * _DOWN[i])
        acc[n, nd - 1 - i] += np.int64(q * sign)
        rest = rest - q * _UP[i]
        if rest == 0.0:
            return
    acc[n, nd - 1] += np.int64(np.floor(rest) * sign)


_UP = np.array([2.0 ** (32 * i) for i in range(32)])  # 2^(32 i): exact, normal floats
_DOWN = np.array([2.0 ** (-32 * i) for i in range(32)])
_COMB = np.array([[1, 0, 0, 0], [1, 1, 0, 0], [1, 2, 0, 0], [1, 3, 3, 0], [1, 4, 6, 4]], np.float64)


_SCRATCH = threading.local()


def _stage(n: int, ctx: int) -> np.ndarray:
    """``[n, ctx]`` float32 scratch rows, kept per thread: a batch touches only the rows of its
    new examples, and reusing them spares the page faults of a fresh buffer every batch."""
    buf = getattr(_SCRATCH, "stage", None)
    if buf is None or buf.shape[0] < n or buf.shape[1] != ctx:
        buf = _SCRATCH.stage = np.empty((n, ctx), np.float32)
    return buf[:n]


@functools.cache
def _pool(n: int) -> concurrent.futures.ThreadPoolExecutor:
    return concurrent.futures.ThreadPoolExecutor(n, thread_name_prefix="atlas-reduce")


def _keys(v: np.ndarray) -> np.ndarray:
    """int32 order keys of float32 ``v`` (:func:`.ranking.order_key`)."""
    return order_key(torch.from_numpy(v)).numpy().astype(np.int32)


_INF_KEYS = _keys(np.array([-np.inf, np.inf], np.float32))  # NaN keys lie beyond these


def run(
    n_threads: int,
    raw: np.ndarray,
    rows: np.ndarray,
    pos: np.ndarray,
    order: np.ndarray,
    g: np.ndarray,
    prio: np.ndarray,
    threshold: float,
    hist_exp: tuple[int, int],
    st: dict[str, np.ndarray],
    pivots: np.ndarray,
    lengths: np.ndarray,
    example_dtype: torch.dtype,
) -> dict[str, np.ndarray]:
    """Fold the activations ``raw [B, T, d]`` at tokens ``(rows, pos)`` into ``st`` (in place).

    ``raw`` holds their bits: int32 for float32 values, int16 for bf16 values (the top half of
    the same float32's bits: a bf16 batch is read as it is, half the bytes, not cast first).

    ``st`` holds writable numpy views of the state entries :data:`STATE`, ``hist`` and the
    example windows ``top_acts``/``bot_acts`` as raw bits (int16) of ``example_dtype``;
    ``prio`` holds the tokens' hashes and ``lengths [B]`` the rows' lengths. Kept examples'
    windows are moved along, new ones gathered (zero past a row's length). Returns the batch's
    float64 sums ``s1`` .. ``s4`` (of ``(x - c)`` .. ``(x - c)^4`` over finite values, ``c =
    pivots [d]``) and ``nonfinite [d]``.
    """
    d = raw.shape[2]
    k = st["top_key"].shape[1]
    nb = st["hist"].shape[1]
    r = st["samp_h"].shape[1]
    out = {f"s{i}": np.zeros(d) for i in range(1, 5)}
    for name in ("npos", "nthr", "nonfinite"):  # this batch's counts (fewer bytes than int64)
        out[name] = np.zeros(d, np.int32)
    # both sides' lists stacked [2, d, k] (top, bottom): one insertion code for both
    lkey = np.stack([st["top_key"], st["bot_key"]])
    lg = np.stack([st["top_g"], st["bot_g"]])
    lsrc = np.tile(np.arange(k), (2, d, 1))
    was_nan = np.isnan(st["min"]) | np.isnan(st["max"])
    lo_key, hi_key = _keys(st["min"]), _keys(st["max"])
    # bin-major (a row's neurons fall in a few bins), count and threshold side by side in one
    # word (little-endian: the count is the low half); int16 halves when a batch's counts fit
    small = rows.shape[0] < SMALL_BATCH
    ctype, wide, pshift = (np.int16, np.int32, 48) if small else (np.int32, np.int64, 32)
    tiles = -(-d // TILE)
    assert TILE & (TILE - 1) == 0, "TILE is a power of two (a cell's bin is a shift)"
    flat = raw.reshape(-1, d)  # [B * T, d]: a token is a row
    cells = np.zeros((tiles, nb, TILE, 2), dtype=ctype)
    thresh = np.zeros((tiles * TILE, nb), dtype=ctype)
    thresh[:d] = (st["samp_h"][:, r - 1] >> pshift).astype(ctype).reshape(d, nb)
    cells[..., 1] = thresh.reshape(tiles, TILE, nb).transpose(0, 2, 1)
    words = cells.view(wide)[..., 0]  # [tiles, nb, TILE]
    stage = _stage(2 * k * tiles * TILE, st["top_acts"].shape[2])  # new windows, see _gather
    args: tuple[Any, ...] = (
        words, flat, rows * raw.shape[1] + pos, order, g, prio,
        np.float32(threshold),
        *bins.block_affine(*hist_exp), out["s1"], out["s2"], out["s3"], out["s4"], lo_key,
        hi_key, out["npos"], out["nthr"], pshift, lkey, lg, lsrc, st["top_acts"],
        st["bot_acts"], st["samp_h"], st["samp_g"], st["samp_v"],
        np.ascontiguousarray(pivots, np.float64), out["nonfinite"], st["salt"], rows, lengths,
        stage,
    )  # fmt: skip
    blocks = np.linspace(0, tiles, max(1, n_threads) + 1).round().astype(np.int64)
    spans = [(int(a), int(b)) for a, b in itertools.pairwise(blocks) if b > a]
    first = [2 * k * a * TILE for a, _ in spans]  # a span's stage rows: 2 k per neuron at most
    if len(spans) == 1:
        news = [_tiles(*spans[0], first[0], *args)]
    else:
        pool = _pool(len(spans))
        jobs = [pool.submit(_tiles, a, b, f, *args) for (a, b), f in zip(spans, first, strict=True)]
        news = [j.result() for j in jobs]
    st["hist"] += cells[..., 0].transpose(0, 2, 1).reshape(-1, nb)[:d]
    for f, n in zip(first, news, strict=True):  # the new windows, rounded as torch rounds them
        bits = torch.from_numpy(stage[f : f + n]).to(example_dtype).view(torch.int16).numpy()
        for i, side in enumerate(("top", "bot")):
            put_windows(st[f"{side}_acts"], lsrc[i], bits, f)
    for i, side in enumerate(("top", "bot")):
        st[f"{side}_key"][:], st[f"{side}_g"][:] = lkey[i], lg[i]
    st["n_pos"] += out.pop("npos")
    st["n_thr"] += out.pop("nthr")
    nan = was_nan | (lo_key < _INF_KEYS[0]) | (hi_key > _INF_KEYS[1])
    for name, key in (("min", lo_key), ("max", hi_key)):  # NaN anywhere makes both NaN
        value = key_value(torch.from_numpy(key.astype(np.int64))).numpy()
        st[name][:] = np.where(nan, np.nan, value)
    return out
