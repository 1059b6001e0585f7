"""Selection modes, navigation arithmetic and influence filtering against hand-computed values."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from neuron_signatures.analysis.results import load_ranking
from neuron_signatures.web.selection import (
    INFLUENCE,
    MANUAL,
    PEAKS,
    InfluenceTable,
    available_modes,
    default_mode,
    filter_influence,
    index_of,
    influence_candidates,
    kept_caption,
    manual_step,
    metric_bounds,
    peaks_candidates,
    picked_from_points,
    step_index,
)
from tests.web.fixtures import INFLUENCE_NAME, INFLUENCE_ROWS, PEAK_ROWS


@pytest.mark.parametrize(
    ("peaks", "influence", "modes", "default"),
    [
        (True, True, [MANUAL, PEAKS, INFLUENCE], INFLUENCE),
        (True, False, [MANUAL, PEAKS], PEAKS),
        (False, True, [MANUAL, INFLUENCE], INFLUENCE),
        (False, False, [MANUAL], MANUAL),
    ],
)
def test_modes(peaks: bool, influence: bool, modes: list[str], default: str) -> None:
    assert available_modes(peaks, influence) == modes
    assert default_mode(modes) == default


@pytest.mark.parametrize(
    ("index", "delta", "length", "expected"),
    [(0, -1, 5, 0), (0, 1, 5, 1), (4, 1, 5, 4), (3, 10, 5, 4), (2, -10, 5, 0), (2, 1, 0, 0)],
)
def test_step_index(index: int, delta: int, length: int, expected: int) -> None:
    assert step_index(index, delta, length) == expected


@pytest.mark.parametrize(
    ("layers", "start", "delta", "expected"),
    [
        ([0, 1], (0, 3), 1, (1, 0)),  # crosses into the next layer
        ([0, 1], (1, 0), -1, (0, 3)),
        ([0, 1], (0, 0), -10, (0, 0)),  # clamped at the first neuron
        ([0, 1], (1, 3), 10, (1, 3)),  # clamped at the last
        ([0, 1], (0, 1), 5, (1, 2)),
        ([2, 5], (2, 3), 1, (5, 0)),  # captured layers only
    ],
)
def test_manual_step(layers: list[int], start: tuple, delta: int, expected: tuple) -> None:
    assert manual_step(layers, 4, *start, delta) == expected


def test_filter_keeps_file_order_and_drops_nan() -> None:
    v = np.array([0.5, -0.3, 0.2, -0.1, 0.05, np.nan])
    assert filter_influence(v, -0.2, 0.3).tolist() == [2, 3, 4]
    assert filter_influence(np.abs(v), 0.1, 1.0).tolist() == [0, 1, 2, 3]
    assert metric_bounds(v) == (-0.3, 0.5)
    assert metric_bounds(np.array([np.nan])) == (0.0, 0.0)


def test_kept_caption() -> None:
    assert kept_caption(3, 5, 3) == "kept 3/5"
    assert kept_caption(3, 5, 2) == "kept 3/5 (showing the first 2)"


def test_influence_table_and_candidates(web_run: Path) -> None:
    ranking = load_ranking(web_run / "analysis" / INFLUENCE_NAME)
    assert ranking is not None
    t = InfluenceTable.from_ranking(ranking)
    assert len(t) == len(INFLUENCE_ROWS)
    assert t.influence.tolist() == [r[3] for r in INFLUENCE_ROWS]
    assert t.metric("abs_influence").tolist() == [abs(r[3]) for r in INFLUENCE_ROWS]
    assert t.metric("activation").tolist() == [r[2] for r in INFLUENCE_ROWS]
    with pytest.raises(ValueError):
        t.metric("nope")
    kept = filter_influence(t.metric("influence"), 0.0, 1.0)  # 0.5, 0.2, 0.05 in file order
    cands = influence_candidates(t, kept, "influence", limit=2)
    assert [(c.layer, c.neuron) for c in cands] == [(1, 3), (1, 7)]
    assert cands[0].label.startswith("#1 L1 N3 | influence=0.5")
    assert cands[0].fields["real_delta"] == 0.48
    assert index_of(cands, 1, 7) == 1 and index_of(cands, 9, 9) is None


def test_peaks_candidates(web_run: Path) -> None:
    ranking = load_ranking(web_run / "analysis" / "top_neurons.json")
    assert ranking is not None
    cands = peaks_candidates(ranking, 10)
    assert [(c.layer, c.neuron) for c in cands] == PEAK_ROWS
    assert "mean_peak_abs=5" in cands[0].label and "mode_tok= Texas" in cands[0].label
    assert len(peaks_candidates(ranking, 1)) == 1


def test_picked_from_points() -> None:
    points = [{"customdata": [3, 1, 2]}, {"customdata": [1, 0, 0]}, {"x": 1}]
    assert picked_from_points(points, 5) == 1  # best ranked of a lasso selection
    assert picked_from_points([{"customdata": 2}], 5) == 2
    assert picked_from_points([{"customdata": [7]}], 5) is None  # out of range
    assert picked_from_points([], 5) is None
