"""Exact fixed-point sums: float64 values truncated to multiples of 2^-64, as integer digits.

A value is four base-2^32 digits, most significant first (``[d, 4]`` int64, range ±2^63): adding
digit arrays and carrying is exact integer arithmetic, so a total does not depend on the order or
grouping of what was added (the property that makes ``merge`` byte-identical).
"""

from __future__ import annotations

import torch

FIX_BITS = 64  # units of 2^-64 ...
DIGIT = 32  # ... in base-2^32 digits
SUM_CLAMP = 2.0**62


def fixed_digits(v: torch.Tensor) -> torch.Tensor:
    """``[d, 4]`` int64 base-2^32 digits of ``trunc(v * 2^64)`` for float64 ``v [d]``, exact.

    The digits of ``|v|`` come out of floor divisions by powers of two (exact in float64) and
    take ``v``'s sign; ``|v|`` is clamped below ``2^62``, NaN counts as 0.
    """
    s = torch.nan_to_num(v, nan=0.0).clamp(-SUM_CLAMP, SUM_CLAMP)
    sign = torch.sign(s)
    rest = s.abs() * 2.0**FIX_BITS
    out = []
    for w in (3 * DIGIT, 2 * DIGIT, DIGIT):
        q = torch.floor(rest / 2.0**w)
        out.append(q)
        rest = rest - q * 2.0**w
    out.append(torch.floor(rest))
    return (torch.stack(out, 1) * sign[:, None]).to(torch.int64)


def normalize(acc: torch.Tensor) -> torch.Tensor:
    """Carry digits so that the three low ones are in ``[0, 2^32)`` (a canonical form)."""
    acc = acc.clone()
    for i in (3, 2, 1):
        carry = acc[:, i] >> DIGIT
        acc[:, i] -= carry << DIGIT
        acc[:, i - 1] += carry
    return acc
