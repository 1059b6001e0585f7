"""Causal check of an attribution: ablate each top neuron for real and compare.

1. Take the top N neurons of an influence ranking.
2. Run N + 1 copies of the prompt in batches: copy 0 clean, copy i with neuron i set to zero
   (or to its mean activation over the run's non-BOS tokens) at the scored position(s).
3. ``real_delta = objective(copy i) − objective(clean)``; the attribution predicts
   ``predicted_delta = −(influence − m · Σ coef)`` for ablation value ``m`` (``−influence`` for
   zero ablation), ``coef`` being the gradient (act×grad) or the DLA coefficient.
4. Report the Spearman rank correlation and the sign agreement of the two.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import BadArgumentError
from ..store import Run


@dataclass
class CausalCheck:
    """Real and predicted objective changes of the top N neurons, and how well they agree."""

    real_delta: np.ndarray  # [N]
    predicted_delta: np.ndarray  # [N]
    ablation: str
    spearman: float | None
    sign_agreement: float | None

    def summary(self) -> dict[str, Any]:
        return {
            "n": len(self.real_delta),
            "ablation": self.ablation,
            "spearman": self.spearman,
            "sign_agreement": self.sign_agreement,
            "max_abs_real_delta": float(np.abs(self.real_delta).max(initial=0.0)),
        }


def spearman(x: np.ndarray, y: np.ndarray) -> float | None:
    """Spearman rank correlation (average ranks on ties); None when undefined."""
    import pandas as pd

    if len(x) < 2:
        return None
    rx = pd.Series(x).rank(method="average").to_numpy()
    ry = pd.Series(y).rank(method="average").to_numpy()
    if rx.std() == 0 or ry.std() == 0:
        return None
    return float(np.corrcoef(rx, ry)[0, 1])


def sign_agreement(real: np.ndarray, predicted: np.ndarray) -> float | None:
    """Share of neurons whose real and predicted changes have the same sign."""
    if len(real) == 0:
        return None
    return float(np.mean(np.sign(real) == np.sign(predicted)))


def neuron_means(run: Run, layers: Sequence[int]) -> dict[int, np.ndarray]:
    """Mean activation of every neuron of ``layers`` over the run's tokens (BOS left out)."""
    missing = [layer for layer in layers if layer not in run.layers]
    if missing:
        raise BadArgumentError(
            f"--ablation mean needs layers {missing}, which this run did not capture: use "
            "--ablation zero or dump those layers"
        )
    skip = 1 if run.prepend_bos else 0
    sums = {layer: np.zeros(run.d_mlp, np.float64) for layer in layers}
    count = 0
    for block in run.iter_blocks():
        keep = np.ones(block.n_tokens, bool)
        if skip:
            keep[np.asarray(block.starts)] = False
        count += int(keep.sum())
        for layer in layers:
            sums[layer] += block.acts(layer)[keep].sum(axis=0, dtype=np.float64)
    return {layer: (s / max(count, 1)).astype(np.float32) for layer, s in sums.items()}


def causal_check(
    real_delta: np.ndarray,
    influence: np.ndarray,
    coef_sum: np.ndarray,
    values: np.ndarray,
    ablation: str,
) -> CausalCheck:
    """Assemble the comparison from measured changes and the attribution's prediction."""
    predicted = -(influence - values * coef_sum)
    return CausalCheck(
        real_delta=real_delta,
        predicted_delta=predicted,
        ablation=ablation,
        spearman=spearman(real_delta, predicted),
        sign_agreement=sign_agreement(real_delta, predicted),
    )
