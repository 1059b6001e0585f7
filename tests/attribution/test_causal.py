"""Spearman and sign agreement of the causal check, on hand-built inputs with known answers."""

from __future__ import annotations

import numpy as np
import pytest

from neuron_signatures.attribution.causal import causal_check, sign_agreement, spearman


def rank_formula(x: list[float], y: list[float]) -> float:
    """Spearman by the textbook formula ``1 - 6 Σd² / (n(n² - 1))`` (distinct values only)."""
    n = len(x)
    rx = {v: i + 1 for i, v in enumerate(sorted(x))}
    ry = {v: i + 1 for i, v in enumerate(sorted(y))}
    d2 = sum((rx[a] - ry[b]) ** 2 for a, b in zip(x, y, strict=True))
    return 1 - 6 * d2 / (n * (n * n - 1))


@pytest.mark.parametrize(
    ("x", "y", "want"),
    [
        ([1, 2, 3, 4, 5], [10, 20, 30, 40, 50], 1.0),
        ([1, 2, 3, 4, 5], [5, 4, 3, 2, 1], -1.0),
        ([1, 2, 3, 4, 5], [1, 8, 27, 64, 125], 1.0),  # monotone, not linear: still exactly 1
        ([1, 2, 3, 4, 5], [2, 1, 4, 3, 5], 0.8),  # Σd² = 4 → 1 - 24/120
        ([1, 2, 3], [1, 3, 2], 0.5),  # Σd² = 2 → 1 - 12/24
        ([1, 2, 3, 4], [1, 1, 2, 2], 2 / np.sqrt(5)),  # ties: ranks 1.5,1.5,3.5,3.5 → 0.8944
        ([1, 1, 2, 2], [1, 2, 1, 2], 0.0),  # ties on both sides, no association
    ],
)
def test_spearman_known_values(x: list[float], y: list[float], want: float) -> None:
    got = spearman(np.array(x, float), np.array(y, float))
    assert got == pytest.approx(want, abs=1e-12)


def test_spearman_matches_the_rank_formula_without_ties() -> None:
    rng = np.random.default_rng(0)
    for n in (2, 3, 7, 20):
        x, y = rng.permutation(n * 3)[:n].astype(float), rng.normal(size=n)
        assert spearman(x, y) == pytest.approx(rank_formula(list(x), list(y)), abs=1e-12)


def test_spearman_undefined() -> None:
    assert spearman(np.array([1.0]), np.array([2.0])) is None  # one point
    assert spearman(np.array([1.0, 1.0, 1.0]), np.array([1.0, 2.0, 3.0])) is None  # constant


def test_sign_agreement_and_causal_check() -> None:
    real = np.array([-1.0, -0.5, 0.2, 0.1])
    assert sign_agreement(real, np.array([-2.0, -1.0, -0.1, 0.3])) == 0.75
    assert sign_agreement(np.array([]), np.array([])) is None
    # zero ablation predicts -influence; mean ablation subtracts m * coef
    infl, coef, m = np.array([2.0, 1.0, -0.3, 0.5]), np.array([1.0, 2.0, 3.0, 4.0]), 0.1
    zero = causal_check(real, infl, coef, np.zeros(4), "zero")
    np.testing.assert_allclose(zero.predicted_delta, [-2.0, -1.0, 0.3, -0.5])
    assert zero.spearman == pytest.approx(1.0) and zero.sign_agreement == 0.75  # same order
    mean = causal_check(real, infl, coef, np.full(4, m), "mean")
    np.testing.assert_allclose(mean.predicted_delta, [-1.9, -0.8, 0.6, -0.1])
    assert mean.summary()["n"] == 4 and mean.summary()["max_abs_real_delta"] == 1.0
