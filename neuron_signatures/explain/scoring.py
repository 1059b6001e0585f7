"""Correlation scores as OpenAI's automated-interpretability defines them, and their floors.

``correlation_score`` in ``neuron_explainer/explanations/scoring.py`` is Pearson's r of the real
and simulated activations, flattened over every token of every scored window; OpenAI reports it
on two sets: **top-and-random** (held-out top windows plus random windows, pooled) and
**random-only**. Here both are computed in float64 for all neurons of a layer at once:

1. Lay the neuron's held-out tokens in a row with a mask (tokens of other neurons' windows, or
   the neuron's train tokens, are masked out).
2. Pearson's r of the masked row, two-pass (means first, then centred sums): no cancellation.
3. The **floor**: the same scorer with another neuron's explanation (a seeded derangement of
   the neurons explained on that side), so a reader can tell signal from chance.

A score is NaN (``null`` on disk) where the real or simulated activations are constant over the
held-out tokens: Pearson's r is undefined there, as ``np.corrcoef`` says.
"""

from __future__ import annotations

import numpy as np


def correlation_score(real: np.ndarray, predicted: np.ndarray) -> float:
    """Pearson's r of two flat arrays (the definition of the anchor), float64."""
    x = np.asarray(real, np.float64).ravel()
    y = np.asarray(predicted, np.float64).ravel()
    x, y = x - x.mean(), y - y.mean()
    den = np.sqrt((x * x).sum() * (y * y).sum())
    return float((x * y).sum() / den) if den > 0 else float("nan")


def pooled_pearson(x: np.ndarray, y: np.ndarray, ok: np.ndarray) -> np.ndarray:
    """Row-wise Pearson's r of ``x, y [d, n]`` over the tokens where ``ok [d, n]`` (steps 1-2)."""
    w = ok.astype(np.float64)
    n = w.sum(1)
    with np.errstate(invalid="ignore", divide="ignore"):
        mx = (w * x).sum(1) / n
        my = (w * y).sum(1) / n
        cx = np.where(ok, x - mx[:, None], 0.0)
        cy = np.where(ok, y - my[:, None], 0.0)
        sxy, sxx, syy = (cx * cy).sum(1), (cx * cx).sum(1), (cy * cy).sum(1)
        den = np.sqrt(sxx * syy)
        return np.where(den > 0, sxy / np.where(den > 0, den, 1.0), np.nan)


class CentredX:
    """:func:`pooled_pearson` against many ``y`` for one ``x, ok [d, n]``: the real row is
    centred once (``cx``, 0 where masked), so each ``y`` costs its mean, ``sum cx*y`` (equal to
    the centred cross sum, ``cx`` summing to 0) and its centred square sum."""

    def __init__(self, x: np.ndarray, ok: np.ndarray) -> None:
        self.ok = ok
        self.n = ok.sum(1).astype(np.float64)
        with np.errstate(invalid="ignore", divide="ignore"):
            mx = np.where(ok, x, 0.0).sum(1) / self.n
        self.cx = np.where(ok, x - mx[:, None], 0.0)
        self.sxx = (self.cx * self.cx).sum(1)

    def pearson(self, y: np.ndarray) -> np.ndarray:
        with np.errstate(invalid="ignore", divide="ignore"):
            y = np.where(self.ok, y, 0.0)
            my = y.sum(1) / self.n
            cy = np.where(self.ok, y - my[:, None], 0.0)
            den = np.sqrt(self.sxx * (cy * cy).sum(1))
            sxy = (self.cx * cy).sum(1)
            return np.where(den > 0, sxy / np.where(den > 0, den, 1.0), np.nan)


def segment_pearson(
    seg: np.ndarray, x: np.ndarray, y: np.ndarray, d: int, w: np.ndarray | None = None
) -> np.ndarray:
    """``[d]`` Pearson's r of flat ``x, y [n]`` within each segment ``seg [n]`` (in ``0..d-1``),
    weighted by ``w [n]`` (default 1), two-pass as :func:`pooled_pearson` (the validation
    slice's scorer: a flat token list)."""
    w = np.ones(len(x)) if w is None else w
    n = np.bincount(seg, weights=w, minlength=d)
    with np.errstate(invalid="ignore", divide="ignore"):
        mx = np.bincount(seg, weights=w * x, minlength=d) / n
        my = np.bincount(seg, weights=w * y, minlength=d) / n
        cx, cy = x - mx[seg], y - my[seg]
        sxy = np.bincount(seg, weights=w * cx * cy, minlength=d)
        sxx = np.bincount(seg, weights=w * cx * cx, minlength=d)
        syy = np.bincount(seg, weights=w * cy * cy, minlength=d)
        den = np.sqrt(sxx * syy)
        return np.where(den > 0, sxy / np.where(den > 0, den, 1.0), np.nan)


def derangement(has: np.ndarray, seed: int, layer: int, side: str) -> np.ndarray:
    """``[d]``: for each neuron with an explanation, another such neuron whose explanation gives
    its floor (-1: none, or no other neuron explained on that side); seeded by layer and side."""
    idx = np.flatnonzero(has)
    out = np.full(len(has), -1, np.int64)
    if len(idx) < 2:
        return out
    rng = np.random.default_rng([seed, layer, 0 if side == "positive" else 1])
    p = idx[rng.permutation(len(idx))]
    out[p] = np.roll(p, -1)
    return out
