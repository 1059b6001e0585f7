"""Pick the head of a ranking: top-K, or the smallest prefix reaching a share of the total.

Scores are ranked in descending order with a stable sort, so equal scores keep their input
order (for peaks: layer, then neuron). Cumulative selection works on non-negative scores (the
peaks' ``mean_peak_abs``, or ``|influence|``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import BadArgumentError


@dataclass(frozen=True)
class Selection:
    """How a ranking was cut: ``mode`` is ``top_k`` or ``cumulative``."""

    mode: str
    top_k: int | None = None
    threshold: float | None = None

    @property
    def tag(self) -> str:
        """File-name tag: ``top200`` or ``cum0.8``."""
        if self.mode == "top_k":
            return f"top{self.top_k}"
        return f"cum{self.threshold:g}"

    def to_dict(self) -> dict[str, Any]:
        return {"mode": self.mode, "top_k": self.top_k, "cumulative_threshold": self.threshold}


def make_selection(top_k: int | None, cumulative_threshold: float | None) -> Selection:
    """The selection the flags ask for; the cumulative threshold wins over the default top-K."""
    if cumulative_threshold is not None:
        if not np.isfinite(cumulative_threshold):
            raise BadArgumentError("--cumulative_threshold must be a finite number such as 0.8")
        return Selection("cumulative", threshold=float(cumulative_threshold))
    k = 200 if top_k is None else int(top_k)
    if k < 0:
        raise BadArgumentError(f"--top_k must be 0 or more, got {k}")
    return Selection("top_k", top_k=k)


def rank_order(scores: np.ndarray) -> np.ndarray:
    """Indices sorting ``scores`` descending; ties keep input order; NaN last."""
    s = np.where(np.isnan(scores), -np.inf, scores)
    return np.argsort(-s, kind="stable")


def cumulative_count(sorted_scores: np.ndarray, threshold: float) -> int:
    """Smallest prefix of descending non-negative scores whose sum reaches ``threshold`` × total.

    ``threshold <= 0`` → 0; ``threshold >= 1`` → all; a zero total → 0.
    """
    n = len(sorted_scores)
    total = float(np.sum(sorted_scores, dtype=np.float64))
    if threshold <= 0 or n == 0 or total <= 0:
        return 0
    if threshold >= 1:
        return n
    cum = np.cumsum(sorted_scores, dtype=np.float64)
    return min(n, int(np.searchsorted(cum, threshold * total, side="left")) + 1)


def select(scores: np.ndarray, selection: Selection) -> np.ndarray:
    """Indices of the selected rows, best first."""
    order = rank_order(scores)
    if selection.mode == "top_k":
        return order[: selection.top_k]
    return order[: cumulative_count(scores[order], float(selection.threshold or 0.0))]
