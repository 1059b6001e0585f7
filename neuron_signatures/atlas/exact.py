"""Exact fixed-point power sums: ``sum x^k`` over finite activations as integer digits.

A total is ``D`` base-2^32 digits, most significant first (``[d, D]`` int64), in units of
``2^-B``: adding digit arrays and carrying is exact integer arithmetic, so a total does not depend
on the order or grouping of what was added (the property that makes ``merge`` byte-identical).

Per power ``k`` (:data:`LAYOUT`): units ``2^-64k`` and enough digits for ``2^40`` tokens of the
largest float32 (``|x| < 2^128``), so no finite activation is out of range.

Each batch adds its sums through a pivot, so the large offset of a neuron far from zero does not
swamp its spread (a neuron of ``1000 + N(0, 0.1)`` has ``sum x^4`` near ``1e12 N`` and a fourth
central moment near ``3e-4``):

1. ``c``: per neuron, the batch's first token's value (in priority order) rounded to 8 significant
   bits (0 when not finite); a token of the batch, so usually within a few standard deviations.
2. ``S_j = sum (x - c)^j`` for ``j = 1..4`` in float64 over the batch's finite values, and
   ``S_0`` their count. ``x - c`` is exact (float32 ``x``, 8-bit ``c``); the sums carry float64
   rounding relative to ``sum |x - c|^j``, i.e. to the neuron's spread, not its offset.
3. ``sum x^k = sum_j C(k, j) c^(k-j) S_j``, expanded exactly: each ``S_j`` (``j < k``) is split
   into two 26-bit halves (Veltkamp), so ``C(k, j) c^(k-j) * half`` (at most 3 + 24 + 26 bits)
   is an exact float64, whose digits are exact; terms below ``2^-64k`` are truncated.

The reader then computes central moments from the exact totals in rational arithmetic.
"""

from __future__ import annotations

from math import comb
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # readers import this module without torch (unit_bits only)
    import torch

DIGIT = 32  # base-2^32 digits
LAYOUT = {1: (7, 64), 2: (13, 128), 3: (19, 192), 4: (25, 256)}  # power → (digits, unit bits)
LEGACY = (4, 64)  # format versions 1 and 2: four digits in units of 2^-64 for every power
PIVOT_BITS = 8
SPLIT = 2.0**27 + 1  # Veltkamp's factor: a float64 into two halves of at most 26 bits


def unit_bits(power: int, n_digits: int) -> int:
    """``B`` of a stored total (units ``2^-B``), told by its digit count."""
    return LEGACY[1] if n_digits == LEGACY[0] else LAYOUT[power][1]


def pivot(first: np.ndarray) -> np.ndarray:
    """float64 pivots ``c [d]`` of float32 values ``first [d]`` (point 1; 0 where not finite)."""
    v = np.asarray(first, dtype=np.float64)
    v = np.where(np.isfinite(v), v, 0.0)
    m, e = np.frexp(v)
    return np.ldexp(np.round(np.ldexp(m, PIVOT_BITS)), e - PIVOT_BITS)


def fixed_digits(v: torch.Tensor, n_digits: int, bits: int) -> torch.Tensor:
    """``[..., D]`` int64 digits of ``trunc(v * 2^bits)`` for finite float64 ``v [...]``, exact.

    The digits of ``|v|`` come out of floor divisions by powers of two (exact in float64) and
    take ``v``'s sign; the top digit holds what is left (no clamp: callers stay in range).
    """
    import torch

    sign = torch.sign(v)
    rest = v.abs() * 2.0**bits
    out = []
    for i in range(n_digits - 1, 0, -1):
        q = torch.floor(rest / 2.0 ** (DIGIT * i))
        out.append(q)
        rest = rest - q * 2.0 ** (DIGIT * i)
    out.append(torch.floor(rest))
    return (torch.stack(out, -1) * sign[..., None]).to(torch.int64)


def normalize(acc: torch.Tensor) -> torch.Tensor:
    """Carry digits so that all but the top one are in ``[0, 2^32)`` (a canonical form)."""
    acc = acc.clone()
    for i in range(acc.shape[-1] - 1, 0, -1):
        carry = acc[..., i] >> DIGIT
        acc[..., i] -= carry << DIGIT
        acc[..., i - 1] += carry
    return acc


def _halves(s: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Veltkamp's split: ``s = hi + lo`` exactly, each with at most 26 significant bits."""
    c = s * SPLIT
    hi = c - (c - s)
    return hi, s - hi


def power_digits(c: torch.Tensor, sums: list[torch.Tensor]) -> list[torch.Tensor]:
    """Digits ``[d, D_k]`` of ``sum x^k`` for ``k = 1..4`` from a batch's pivot ``c [d]`` and
    centered sums ``sums = [S_0 .. S_4]`` (float64 ``[d]``; point 3 of the module docstring)."""
    import torch

    halves = [_halves(s) for s in sums[:4]]
    out = []
    for k in (1, 2, 3, 4):
        n_digits, bits = LAYOUT[k]
        terms = [sums[k]]
        for j in range(k):
            coef = comb(k, j) * c ** (k - j)  # exact: at most 3 + 8 (k - j) bits
            terms += [coef * halves[j][0], coef * halves[j][1]]
        digits = fixed_digits(torch.stack(terms), n_digits, bits)  # [terms, d, D]
        out.append(normalize(digits.sum(0)))
    return out
