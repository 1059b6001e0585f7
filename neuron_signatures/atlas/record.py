"""What the atlas knows about one neuron: the dataclasses every UI reads, and the intervals.

Intervals are cut from the exact histogram at read time:

1. Walk the bins in order, closing an interval when the cumulative count reaches the next
   multiple of ``total / n_intervals``. Intervals are unions of whole bins, so their counts are
   not equal: each holds fewer than ``total / n_intervals`` tokens besides its last bin, which
   can be far larger (one bin may hold most of a neuron's tokens).
2. Label each with its bin edges clamped to the neuron's observed min / max
   ("interval 0.31–0.62 contains 12% of tokens").
3. Its samples are the lowest-priority tokens among its bins' reservoirs: the bottom-r of a union
   of bins, i.e. a seeded uniform sample of the interval's tokens. Every interval gets ``r``
   samples whatever its count: together they are a stratified sample, not a proportional one.
   :attr:`NeuronAtlas.random_sample` is the proportional one: the bottom-r of all reservoirs, a
   uniform draw from all the neuron's tokens. Priorities are salted per neuron, so two neurons'
   samples are independent draws.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np


@dataclass
class NeuronStats:
    """Statistics of one neuron over every counted token of the atlas.

    ``variance``, ``skewness`` and ``kurtosis`` are population moments (no sample correction);
    ``kurtosis`` is the excess kurtosis ``m4 / m2^2 - 3`` (0 for a normal distribution, as
    ``scipy.stats.kurtosis`` gives by default). Both are NaN for a constant neuron and for
    atlases of format version 1 (built before they were kept).

    ``nonfinite`` counts the tokens whose value was NaN or +-inf (``None``: not recorded, atlas
    format version < 3). Any such value makes ``mean``, ``variance``, ``std``, ``skewness`` and
    ``kurtosis`` NaN. ``min`` and ``max`` keep them (NaN once a value was NaN, +-inf when one was
    infinite), as do the histogram (outer bins), ``frac_positive`` (+inf counts as positive) and
    the examples (NaN ranks above +inf).
    """

    count: int
    mean: float
    variance: float
    std: float
    min: float
    max: float
    frac_positive: float
    frac_above_threshold: float
    threshold: float
    skewness: float = float("nan")
    kurtosis: float = float("nan")
    nonfinite: int | None = None


@dataclass
class Example:
    """One token of the corpus and its window.

    Attributes:
        window / position: where the token is (position 0 is the window's BOS).
        document / doc_token: the corpus document and the token's index in it (-1 for BOS).
        value: the neuron's activation on this token.
        token_ids / tokens: the whole window (BOS first).
        acts: the neuron's activation on every token of the window (top / bottom examples only).
        meta: the document's metadata (e.g. ``{"topic": "science"}``).
    """

    window: int
    position: int
    document: int
    doc_token: int
    value: float
    token_ids: list[int]
    tokens: list[str]
    acts: list[float] | None = None
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass
class Interval:
    """An interval of activation values, its share of tokens and uniform samples from it."""

    lo: float
    hi: float
    count: int
    fraction: float
    samples: list[Example]

    @property
    def label(self) -> str:
        return f"interval {self.lo:.3g}–{self.hi:.3g} contains {self.fraction:.1%} of tokens"


@dataclass
class WriteScore:
    token: str
    token_id: int
    score: float


@dataclass
class NeuronAtlas:
    """Everything the atlas knows about one neuron."""

    layer: int
    index: int
    stats: NeuronStats
    histogram_edges: list[float]
    histogram_counts: list[int]
    top: list[Example]
    bottom: list[Example]
    intervals: list[Interval]
    write_top: list[WriteScore]
    write_bottom: list[WriteScore]
    random_sample: list[Example] = field(default_factory=list)  # uniform over all tokens

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        for iv, d in zip(self.intervals, out["intervals"], strict=True):
            d["label"] = iv.label
        return out


def equal_count_intervals(counts: np.ndarray, n: int = 10) -> list[tuple[int, int]]:
    """Inclusive bin ranges of about ``n`` near-equal-count intervals (non-empty bins only)."""
    total = int(counts.sum())
    nz = np.flatnonzero(counts)
    if total == 0:
        return []
    cum = np.cumsum(counts)
    out: list[tuple[int, int]] = []
    start, j = int(nz[0]), 1
    for i in range(int(nz[0]), int(nz[-1]) + 1):
        if i == nz[-1]:
            out.append((start, i))
        elif cum[i] * n >= total * j and counts[i]:
            out.append((start, i))
            while j < n and cum[i] * n >= total * j:
                j += 1
            start = int(nz[nz > i][0])
    return out
