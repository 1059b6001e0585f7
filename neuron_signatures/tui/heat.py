"""Heatmap colours of a token strip, as the web app draws them, blended for a terminal.

The shared rules of :mod:`neuron_signatures.heat`, per prompt:

1. ``r = |v| / max|v|``, the maximum taken over non-BOS tokens (BOS is an attention sink whose
   activation would wash out the rest), clipped to ``[0, 1]``.
2. Opacity on a log scale: ``min_op + log10(1 + 9 r) * (1 - min_op)``, so ``r = 1`` is opaque;
   0 when ``|v| <= threshold`` (or nothing is above it).
3. Colour by sign: green ``rgb(52,211,153)`` for ``v >= 0``, orange ``rgb(251,146,60)`` below.
   Terminals have no alpha, so the colour is blended over the widget's background.

Atlas examples use one scale per neuron instead of rule 1's per-prompt maximum
(:func:`scaled_rgb`), so the strips of a neuron's examples compare with each other.
"""

from __future__ import annotations

import numpy as np

from ..heat import MIN_OPACITY, NEGATIVE_RGB, POSITIVE_RGB, THRESHOLD, opacity

__all__ = [
    "MIN_OPACITY",
    "NEGATIVE_RGB",
    "POSITIVE_RGB",
    "THRESHOLD",
    "heat_opacity",
    "heat_rgb",
    "scaled_rgb",
]


def heat_opacity(
    values: np.ndarray, n_bos: int = 1, min_op: float = MIN_OPACITY, threshold: float = THRESHOLD
) -> np.ndarray:
    """``[seq]`` opacities for ``values: [seq]``, scaled by ``max|v|`` over the non-BOS tokens.

    Args:
        values: activations of one neuron on one prompt.
        n_bos: leading tokens left out of the maximum (1 when the run prepended BOS).
        min_op: opacity of the faintest highlighted token.
        threshold: ``|v|`` at or below this is not highlighted.
    """
    v = np.abs(np.nan_to_num(np.asarray(values, dtype=np.float64), nan=0.0))
    rest = v[n_bos:] if v.shape[0] > n_bos else v
    peak = float(rest.max()) if rest.size else 0.0
    return opacity(v, peak if peak > threshold else 0.0, min_op, threshold)


def heat_rgb(
    values: np.ndarray,
    background: tuple[int, int, int],
    n_bos: int = 1,
    min_op: float = MIN_OPACITY,
) -> np.ndarray:
    """``[seq, 3]`` uint8 colours: the sign colour at its opacity over ``background``."""
    return _blend(values, heat_opacity(values, n_bos, min_op), background)


def scaled_rgb(
    values: np.ndarray, background: tuple[int, int, int], scale: float, min_op: float = MIN_OPACITY
) -> np.ndarray:
    """``[seq, 3]`` uint8 colours with a fixed ``scale`` (e.g. a neuron's ``max|v|`` over the
    whole atlas) in place of the prompt's own maximum; ``scale <= 0`` (or NaN) colours nothing."""
    v = np.nan_to_num(np.asarray(values, dtype=np.float64), nan=0.0)
    s = float(scale) if np.isfinite(scale) and scale > THRESHOLD else 0.0
    return _blend(v, opacity(v, s, min_op, THRESHOLD), background)


def _blend(values: np.ndarray, op: np.ndarray, background: tuple[int, int, int]) -> np.ndarray:
    sign = np.where(np.nan_to_num(values)[:, None] >= 0, POSITIVE_RGB, NEGATIVE_RGB)
    rgb = op[:, None] * sign + (1.0 - op[:, None]) * np.asarray(background, dtype=np.float64)
    return np.rint(rgb).astype(np.uint8)


def ink_for(rgb: np.ndarray) -> np.ndarray:
    """``[seq]`` bool: True where dark text reads better than light on ``rgb: [seq, 3]``."""
    luma = rgb.astype(np.float64) @ np.array([0.299, 0.587, 0.114])
    return luma > 140.0
