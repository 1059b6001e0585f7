"""Neuron selection for the web app (pure): modes, candidate lists, navigation and filtering.

Three modes pick the neuron on screen:

* ``manual``: a layer and a neuron; Prev/Next step one neuron, -10/+10 ten, crossing layer borders
  (the captured neurons form one flat list ``layer_pos * d_mlp + neuron``);
* ``peaks_top_neurons``: the rows of a ``top_neurons*.json`` ranking;
* ``influence_json``: the records of an ``influence_*.json`` file, filtered by a metric range and
  kept in file order.

The default mode is influence, then peaks, then manual, depending on which files exist.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..analysis.results import Ranking

MANUAL = "manual"
PEAKS = "peaks_top_neurons"
INFLUENCE = "influence_json"
MODES = (MANUAL, PEAKS, INFLUENCE)
INFLUENCE_METRICS = ("abs_influence", "influence", "activation")
NAV_STEPS = {"Prev": -1, "Next": 1, "-10": -10, "+10": 10}


def available_modes(has_peaks: bool, has_influence: bool) -> list[str]:
    """The modes the analysis folder supports, in display order."""
    return [m for m, ok in ((MANUAL, True), (PEAKS, has_peaks), (INFLUENCE, has_influence)) if ok]


def default_mode(modes: Sequence[str]) -> str:
    """Influence if available, then peaks, then manual."""
    for m in (INFLUENCE, PEAKS):
        if m in modes:
            return m
    return MANUAL


def step_index(index: int, delta: int, length: int) -> int:
    """``index + delta`` clamped to ``0 .. length - 1`` (0 for an empty list)."""
    if length <= 0:
        return 0
    return int(min(max(index + delta, 0), length - 1))


def manual_step(
    layers: Sequence[int], d_mlp: int, layer: int, neuron: int, delta: int
) -> tuple[int, int]:
    """Move ``delta`` neurons through the flat list of captured neurons (clamped at both ends).

    Example: with layers ``[0, 1]`` and ``d_mlp = 4``, ``(0, 3) + 1 -> (1, 0)``.
    """
    pos = list(layers).index(layer) if layer in layers else 0
    flat = step_index(pos * d_mlp + neuron, delta, len(layers) * d_mlp)
    return int(layers[flat // d_mlp]), int(flat % d_mlp)


@dataclass(frozen=True)
class Candidate:
    """One selectable neuron of a ranking; ``fields`` is the ranking row as stored."""

    layer: int
    neuron: int
    rank: int
    label: str
    fields: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)


def peaks_candidates(ranking: Ranking, limit: int) -> list[Candidate]:
    """The first ``limit`` rows of a peaks ranking, labelled with the mode peak token."""
    out = []
    for r in ranking.neurons[: max(0, int(limit))]:
        f = r.fields
        label = (
            f"L{r.layer} N{r.neuron} | mean_peak_abs={float(f.get('mean_peak_abs', r.score)):.4g}"
            f" | mode_tok={f.get('mode_peak_token_ascii', r.label)!s}"
        )
        out.append(Candidate(r.layer, r.neuron, r.rank, label, f))
    return out


@dataclass(frozen=True)
class InfluenceTable:
    """The records of an influence file as arrays ``[n_records]``, in file order."""

    layer: np.ndarray
    neuron: np.ndarray
    rank: np.ndarray
    ctx_idx: np.ndarray
    activation: np.ndarray
    influence: np.ndarray
    rows: list[dict[str, Any]] = field(repr=False, compare=False)

    @classmethod
    def from_ranking(cls, ranking: Ranking) -> InfluenceTable:
        rows = [r.fields for r in ranking.neurons]

        def col(key: str, dtype: Any, default: float) -> np.ndarray:
            return np.array([_num(f.get(key), default) for f in rows], dtype=dtype)

        return cls(
            layer=np.array([r.layer for r in ranking.neurons], dtype=np.int64),
            neuron=np.array([r.neuron for r in ranking.neurons], dtype=np.int64),
            rank=np.array([r.rank for r in ranking.neurons], dtype=np.int64),
            ctx_idx=col("ctx_idx", np.int64, -1),
            activation=col("activation", np.float64, np.nan),
            influence=np.array([r.score for r in ranking.neurons], dtype=np.float64),
            rows=rows,
        )

    def __len__(self) -> int:
        return len(self.layer)

    def metric(self, name: str) -> np.ndarray:
        """``abs_influence``, ``influence`` or ``activation`` as ``[n_records]`` float64."""
        if name == "abs_influence":
            return np.abs(self.influence)
        if name in ("influence", "activation"):
            return getattr(self, name)
        raise ValueError(f"unknown influence metric {name!r}: use one of {INFLUENCE_METRICS}")


def _num(value: Any, default: float) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return default


def metric_bounds(values: np.ndarray) -> tuple[float, float]:
    """``(min, max)`` of the finite values; ``(0, 0)`` when there are none."""
    v = values[np.isfinite(values)]
    return (float(v.min()), float(v.max())) if v.size else (0.0, 0.0)


def filter_influence(values: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """Indices of the records with ``lo <= value <= hi``, in file order (NaN never kept)."""
    v = np.asarray(values, dtype=np.float64)
    return np.flatnonzero((v >= lo) & (v <= hi))


def influence_candidates(
    table: InfluenceTable, kept: np.ndarray, metric: str, limit: int
) -> list[Candidate]:
    """The first ``limit`` kept records, labelled with the filter metric and the activation."""
    m = table.metric(metric)
    out = []
    for i in kept[: max(0, int(limit))].tolist():
        lay, neu = int(table.layer[i]), int(table.neuron[i])
        label = (
            f"#{int(table.rank[i])} L{lay} N{neu} | {metric}={m[i]:.4g} | "
            f"act={table.activation[i]:.4g} | ctx={int(table.ctx_idx[i])}"
        )
        out.append(Candidate(lay, neu, int(table.rank[i]), label, table.rows[i]))
    return out


def kept_caption(n_kept: int, n_total: int, n_shown: int) -> str:
    """``kept n/total`` (plus how many are listed when the top-k limit cuts the list)."""
    text = f"kept {n_kept}/{n_total}"
    return text if n_shown >= n_kept else f"{text} (showing the first {n_shown})"


def index_of(candidates: Sequence[Candidate], layer: int, neuron: int) -> int | None:
    """Position of the first candidate for ``(layer, neuron)``, or None."""
    for i, c in enumerate(candidates):
        if (c.layer, c.neuron) == (layer, neuron):
            return i
    return None


def picked_from_points(points: Iterable[Any], n_candidates: int) -> int | None:
    """The candidate a chart click or lasso picked: the best-ranked (lowest) candidate index.

    Each point carries ``customdata`` whose first item is the candidate index (chart traces are
    built that way); points without it or out of range are ignored.
    """
    picked = []
    for p in points:
        cd = p.get("customdata") if isinstance(p, dict) else getattr(p, "customdata", None)
        if isinstance(cd, (list, tuple)):
            cd = cd[0] if cd else None
        try:
            i = int(cd)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            continue
        if 0 <= i < n_candidates:
            picked.append(i)
    return min(picked) if picked else None


def locate(table: InfluenceTable, layer: int, neuron: int) -> int | None:
    """Row of the first record of ``(layer, neuron)`` in an influence table, or None."""
    hit = np.flatnonzero((table.layer == layer) & (table.neuron == neuron))
    return int(hit[0]) if hit.size else None
