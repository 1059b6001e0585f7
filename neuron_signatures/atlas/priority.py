"""Sampling priorities: a seeded bijective hash of a token's ``g = window * ctx_len + position``.

splitmix64's finalizer (a bijection of 64-bit integers) of ``g`` xor a seed-derived salt, mapped
order-preservingly onto int64. Bijective, so no two tokens of an atlas share a priority; pure
numpy, so readers recompute priorities without torch.
"""

from __future__ import annotations

import numpy as np


def _u64(x: int) -> np.uint64:
    return np.uint64(x & 0xFFFFFFFFFFFFFFFF)


def _mix64(z: np.ndarray) -> np.ndarray:
    """splitmix64's finalizer: a bijection of uint64 with good avalanche."""
    z = (z ^ (z >> _u64(30))) * _u64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> _u64(27))) * _u64(0x94D049BB133111EB)
    return z ^ (z >> _u64(31))


def token_priority(g: np.ndarray, seed: int) -> np.ndarray:
    """int64 sampling priority of tokens ``g`` (a bijection of g for a given seed)."""
    with np.errstate(over="ignore"):
        salt = _mix64(np.array([(seed * 0x9E3779B97F4A7C15 + 1) % 2**64], dtype=np.uint64))
        z = _mix64(np.ascontiguousarray(g, dtype=np.int64).view(np.uint64) ^ salt[0])
    return (z ^ _u64(2**63)).view(np.int64)
