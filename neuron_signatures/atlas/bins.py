"""Histogram bins fixed before the first token: half-octaves read off the float32 bits.

1. A float32 ``x`` with bits ``b`` (int32) falls in block ``b >> 22``: its sign, exponent and
   first mantissa bit, i.e. magnitudes ``[2^e, 1.5 * 2^e)`` and ``[1.5 * 2^e, 2^(e+1))``.
2. A 1024-entry table maps blocks to bins: half-octaves for ``2^lo_exp <= |x| < 2^hi_exp``, one
   bin each side for smaller magnitudes (zero included), one for larger ones (and inf / NaN).
   With the defaults (``2^-14`` ≈ 6e-5 to ``2^10`` = 1024): 100 bins, 99 edges.
3. Bins at or above zero are ``[e[i-1], e[i])``, bins below zero ``(e[i-1], e[i]]`` (a block is
   a range of magnitudes); ``-0.0`` is in the bin just below zero, ``+0.0`` in the one above.

A table lookup costs one gather per activation, no search, and the counts are exact integers.
"""

from __future__ import annotations

import functools

import numpy as np

LO_EXP, HI_EXP = -14, 10
SHIFT = 22


def slots_per_side(lo_exp: int = LO_EXP, hi_exp: int = HI_EXP) -> int:
    return 2 * (hi_exp - lo_exp) + 2


def n_bins(lo_exp: int = LO_EXP, hi_exp: int = HI_EXP) -> int:
    return 2 * slots_per_side(lo_exp, hi_exp)


@functools.cache
def block_table(lo_exp: int = LO_EXP, hi_exp: int = HI_EXP) -> np.ndarray:
    """``[1024]`` int32: bin of each block ``(bits >> 22) + 512`` (read-only, cached)."""
    s = slots_per_side(lo_exp, hi_exp)
    blocks = np.arange(-512, 512, dtype=np.int64)
    bits = (blocks << SHIFT).astype(np.int32)
    mag = np.abs(bits.view(np.float32).astype(np.float64))
    frac, ex = np.frexp(mag)  # mag = frac * 2^ex, frac in [0.5, 1)
    inner = 1 + 2 * (ex - 1 - lo_exp) + (frac >= 0.75)
    slot = np.where(
        mag < 2.0**lo_exp, 0, np.where((mag >= 2.0**hi_exp) | ~np.isfinite(mag), s - 1, inner)
    )
    table = np.where(blocks >= 0, s + slot, s - 1 - slot).astype(np.int32)
    table.setflags(write=False)
    return table


def block_affine(lo_exp: int = LO_EXP, hi_exp: int = HI_EXP) -> tuple[int, int]:
    """``(offset, s)``: :func:`block_table` as arithmetic, for a compiled loop (no gather).

    With ``m = (bits >> 22) & 511`` (exponent and first mantissa bit) and ``slot = clip(m -
    offset, 0, s - 1)``, the bin is ``s + slot`` for a clear sign bit and ``s - 1 - slot``
    (``s + (slot ^ -1)``) for a set one. Exact for every block (tested against the table).
    """
    return 2 * (127 + lo_exp) - 1, slots_per_side(lo_exp, hi_exp)


def edges(lo_exp: int = LO_EXP, hi_exp: int = HI_EXP) -> list[float]:
    """The ``n_bins - 1`` ascending edges: ``±2^e`` and ``±1.5 * 2^e``, and 0."""
    mags = []
    for e in range(lo_exp, hi_exp):
        mags += [2.0**e, 1.5 * 2.0**e]
    mags.append(2.0**hi_exp)
    return [-m for m in reversed(mags)] + [0.0] + mags


def bin_of(values: np.ndarray, lo_exp: int = LO_EXP, hi_exp: int = HI_EXP) -> np.ndarray:
    """Bins of float32 values by the edge rule of point 3 (a reference for the table)."""
    v = np.asarray(values, dtype=np.float32)
    e = np.asarray(edges(lo_exp, hi_exp), dtype=np.float32)
    right = np.searchsorted(e, v, side="right")
    left = np.searchsorted(e, v, side="left")
    return np.where(np.signbit(v), left, right)
