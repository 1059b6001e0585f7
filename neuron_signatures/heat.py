"""The heatmap colour rules shared by the web app and the terminal browser (pure numpy).

1. colour: green ``rgb(52,211,153)`` for a value >= 0, orange ``rgb(251,146,60)`` below 0;
2. opacity: ``min_op + log10(1 + 9 r) * (1 - min_op)`` with ``r = min(|v| / max|v|, 1)``, and 0 when
   ``|v| <= minimum_threshold`` (or when the scale is 0).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

POSITIVE_RGB = (52, 211, 153)
NEGATIVE_RGB = (251, 146, 60)
MIN_OPACITY = 0.05
THRESHOLD = 5e-5


def opacity(
    values: np.ndarray | Sequence[float],
    max_abs: float | np.ndarray,
    minimum_opacity: float = MIN_OPACITY,
    minimum_threshold: float = THRESHOLD,
) -> np.ndarray:
    """Background opacity per value (rule 2); ``max_abs`` is a scalar or broadcasts to values."""
    v = np.abs(np.asarray(values, dtype=np.float64))
    m = np.broadcast_to(np.asarray(max_abs, dtype=np.float64), v.shape)
    with np.errstate(divide="ignore", invalid="ignore"):
        r = np.clip(np.where(m > 0, v / m, 0.0), 0.0, 1.0)
    op = minimum_opacity + np.log10(1.0 + 9.0 * r) * (1.0 - minimum_opacity)
    dark = (v <= minimum_threshold) | ~(m > 0) | ~np.isfinite(v)
    return np.where(dark, 0.0, op)


def colors(values: np.ndarray | Sequence[float]) -> np.ndarray:
    """``[n, 3]`` RGB per value: green for ``v >= 0``, orange below (rule 1)."""
    neg = np.asarray(values, dtype=np.float64) < 0
    return np.where(neg[:, None], np.array(NEGATIVE_RGB), np.array(POSITIVE_RGB))
