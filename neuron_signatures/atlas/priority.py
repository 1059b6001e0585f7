"""Sampling priorities: a seeded hash of a token's ``g = window * ctx_len + position``, salted per
neuron.

1. ``token_hash(g, seed)``: splitmix64's finalizer (a bijection of 64-bit integers) of ``g`` xor a
   seed-derived salt. Computed once per token.
2. ``neuron_salts(seed, layer, d)``: one 64-bit salt per ``(layer, neuron)``, the finalizer of
   ``layer << 32 | neuron`` xor another seed-derived salt.
3. The priority of token ``g`` for a neuron is the finalizer of ``token_hash ^ salt``, mapped
   order-preservingly onto int64. For a fixed neuron it is a bijection of ``g`` (no two tokens of
   an atlas tie); across neurons the orders are independent, so each neuron's reservoirs are its
   own uniform sample (one unsalted hash per token made the same few tokens the samples of every
   neuron of a layer).

Pure numpy (vectorised over tokens and neurons), so readers recompute priorities without torch;
the compiled CPU pass (:mod:`.kernel`) and the torch ops compute the same integers.
"""

from __future__ import annotations

import numpy as np

TOP_BIT = np.uint64(2**63)


def _u64(x: int) -> np.uint64:
    return np.uint64(x & 0xFFFFFFFFFFFFFFFF)


M1, M2 = _u64(0xBF58476D1CE4E5B9), _u64(0x94D049BB133111EB)


def _mix64(z: np.ndarray) -> np.ndarray:
    """splitmix64's finalizer: a bijection of uint64 with good avalanche."""
    z = (z ^ (z >> _u64(30))) * M1
    z = (z ^ (z >> _u64(27))) * M2
    return z ^ (z >> _u64(31))


def _seed_salt(seed: int, which: int) -> np.uint64:
    with np.errstate(over="ignore"):
        s = np.array([(seed * 0x9E3779B97F4A7C15 + which) % 2**64], dtype=np.uint64)
        return _mix64(s)[0]


def token_hash(g: np.ndarray, seed: int) -> np.ndarray:
    """uint64 hash of tokens ``g`` (a bijection of ``g`` for a given seed), viewed as int64."""
    with np.errstate(over="ignore"):
        z = _mix64(np.ascontiguousarray(g, dtype=np.int64).view(np.uint64) ^ _seed_salt(seed, 1))
    return z.view(np.int64)


def neuron_salts(seed: int, layer: int, d: int) -> np.ndarray:
    """``[d]`` uint64 salts of the neurons of ``layer``, viewed as int64."""
    idx = (np.uint64(layer) << np.uint64(32)) | np.arange(d, dtype=np.uint64)
    with np.errstate(over="ignore"):
        return _mix64(idx ^ _seed_salt(seed, 2)).view(np.int64)


def salted_priority(hashes: np.ndarray, salts: np.ndarray) -> np.ndarray:
    """int64 priorities of token hashes under neuron salts (broadcast against each other)."""
    h = np.asarray(hashes, dtype=np.int64).view(np.uint64)
    s = np.asarray(salts, dtype=np.int64).view(np.uint64)
    with np.errstate(over="ignore"):
        return (_mix64(h ^ s) ^ TOP_BIT).view(np.int64)


def legacy_priority(g: np.ndarray, seed: int) -> np.ndarray:
    """The unsalted priority of atlas format versions 1 and 2 (one per token, all neurons)."""
    return (token_hash(g, seed).view(np.uint64) ^ TOP_BIT).view(np.int64)


def token_priority(g: np.ndarray, seed: int, layer: int, neuron: np.ndarray | int) -> np.ndarray:
    """int64 sampling priority of tokens ``g`` for neurons ``neuron`` of ``layer`` (broadcast)."""
    salts = neuron_salts(seed, layer, int(np.max(neuron)) + 1)[np.asarray(neuron)]
    return salted_priority(token_hash(g, seed), salts)
