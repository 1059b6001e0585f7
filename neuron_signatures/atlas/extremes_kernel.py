"""The top-k and bottom-k of every row of a logits chunk in one compiled pass (numba).

``torch.topk`` reads a ``[d_mlp, chunk]`` chunk twice (largest, then smallest) and the running
lists are merged by a ``cat`` + ``topk`` + ``gather`` per side and chunk; for Gemma 3 270M that was
a fifth of the write scores' time on 2 CPU cores. Here:

1. each row keeps its top and bottom lists across chunks (no merge), sorted by value, ties by
   ascending token id (the row is read in id order and an equal value never displaces a kept
   one, so the lowest ids win ties: the order of a stable sort);
2. the row is read in blocks of :data:`BLOCK`; a block whose minimum and maximum both lie within
   the lists' k-th values is skipped after one vectorised min/max (almost every block once the
   lists are full), the others are walked and inserted into by shifting;
3. rows are split over threads (the GIL is released); each row is handled by one thread in id
   order, so results do not depend on the thread count.

NaN is not handled (it compares false): callers only use this where the logits cannot be NaN
(:func:`neuron_signatures.atlas.scores.kernel_safe`).
"""

from __future__ import annotations

import concurrent.futures
import functools
import itertools

import numba
import numpy as np

BLOCK = 64  # logits tested together by one min/max before any is walked


@numba.njit(cache=True, nogil=True, boundscheck=False, fastmath=True, inline="always")
def _span(row: np.ndarray, a: int, b: int) -> tuple[float, float]:
    """``(min, max)`` of ``row[a:b]``; fastmath lets it vectorise (no NaN reaches here)."""
    lo = row[a]
    hi = row[a]
    for j in range(a + 1, b):
        x = row[j]
        lo = min(lo, x)
        hi = max(hi, x)
    return lo, hi


@numba.njit(cache=True, nogil=True, boundscheck=False, inline="always")
def _put(vals: np.ndarray, ids: np.ndarray, p: int, x: float, t: int, top: bool) -> None:
    """Insert ``(x, t)`` at or above slot ``p`` (vacated by the caller), shifting lesser entries."""
    if top:
        while p > 0 and vals[p - 1] < x:
            vals[p] = vals[p - 1]
            ids[p] = ids[p - 1]
            p -= 1
    else:
        while p > 0 and vals[p - 1] > x:
            vals[p] = vals[p - 1]
            ids[p] = ids[p - 1]
            p -= 1
    vals[p] = x
    ids[p] = t


@numba.njit(cache=True, nogil=True, boundscheck=False)
def fold_rows(
    s: np.ndarray,
    lo: int,
    r0: int,
    r1: int,
    top_v: np.ndarray,
    top_i: np.ndarray,
    bot_v: np.ndarray,
    bot_i: np.ndarray,
) -> None:
    """Fold rows ``r0..r1`` of ``s [n, c]`` (token ids ``lo..lo+c``) into the ``[n, k]`` lists.

    The lists hold the first ``lo`` tokens' extremes (``min(lo, k)`` entries filled).
    """
    c = s.shape[1]
    k = top_v.shape[1]
    fill = min(max(k - lo, 0), c)  # the first k tokens overall enter both lists
    for r in range(r0, r1):
        row = s[r]
        tv, ti, bv, bi = top_v[r], top_i[r], bot_v[r], bot_i[r]
        for j in range(fill):
            _put(tv, ti, lo + j, row[j], lo + j, True)
            _put(bv, bi, lo + j, row[j], lo + j, False)
        t_thr = tv[k - 1]
        b_thr = bv[k - 1]
        for a in range(fill, c, BLOCK):
            b = min(a + BLOCK, c)
            mn, mx = _span(row, a, b)
            if mx <= t_thr and mn >= b_thr:
                continue
            for j in range(a, b):
                x = row[j]
                if x > t_thr:
                    _put(tv, ti, k - 1, x, lo + j, True)
                    t_thr = tv[k - 1]
                if x < b_thr:
                    _put(bv, bi, k - 1, x, lo + j, False)
                    b_thr = bv[k - 1]


@functools.cache
def _pool(n: int) -> concurrent.futures.ThreadPoolExecutor:
    return concurrent.futures.ThreadPoolExecutor(n, thread_name_prefix="write-scores")


def fold_chunk(s: np.ndarray, lo: int, lists: tuple[np.ndarray, ...], threads: int) -> None:
    """:func:`fold_rows` over every row of ``s``, the rows split over ``threads`` threads."""
    n = s.shape[0]
    threads = max(1, min(threads, n))
    if threads == 1:
        fold_rows(s, lo, 0, n, *lists)
        return
    cuts = np.linspace(0, n, threads + 1).astype(np.int64).tolist()
    jobs = [
        _pool(threads).submit(fold_rows, s, lo, a, b, *lists) for a, b in itertools.pairwise(cuts)
    ]
    for job in jobs:
        job.result()
