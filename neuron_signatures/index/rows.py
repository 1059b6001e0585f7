"""The rows of the neuron table: an atlas's statistics and its explanations, offline and LLM.

One row per (layer, neuron, explainer, side), in :data:`.table.NAMES` order (step 1 of
:mod:`.table`'s method). Records are read defensively: a score a record lacks is NULL, an LLM
record that holds an error adds no row.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from .columns import (
    EXPLANATIONS,
    EXPLANATIONS_MANIFEST,
    LLM_EXPLANATIONS,
    N_SIDE,
    STAT_KEYS,
)


def _number(x: Any) -> float | None:
    """``x`` when it is a number (not a bool), else ``None``."""
    return float(x) if isinstance(x, int | float) and not isinstance(x, bool) else None


def classifier_scores(side: dict[str, Any], kind: str) -> tuple[float | None, float | None]:
    """``(balanced accuracy, its floor)`` of a side's ``kind`` scorer (``detection`` or
    ``fuzzing``), read defensively: ``classifiers.<kind>.balanced_accuracy`` and ``.floor.
    balanced_accuracy`` (LLM records, version 2), else a number under ``scores.<kind>`` and
    ``floor.<kind>``; ``None`` for whatever is missing."""
    c = (side.get("classifiers") or {}).get(kind)
    if isinstance(c, dict):
        fl = c.get("floor")
        return _number(c.get("balanced_accuracy")), _number(
            fl.get("balanced_accuracy") if isinstance(fl, dict) else fl
        )
    scores, floor = side.get("scores") or {}, side.get("floor") or {}
    return _number(scores.get(kind)), _number(floor.get(kind))


def side_values(rec: dict[str, Any] | None, model: str | None = None) -> list[tuple[Any, ...]]:
    """The explanation columns of one neuron record (``side`` and ``explainer`` ..
    ``floor_fuzzing``), one tuple per side; none for a record without sides. ``model``: the
    explainer's model (the LLM's), stored with each side."""
    out = []
    for s in (rec or {}).get("sides") or []:
        scores, floor = s.get("scores") or {}, s.get("floor") or {}
        det, fuzz = classifier_scores(s, "detection"), classifier_scores(s, "fuzzing")
        out.append(
            (
                s.get("side"),
                s.get("explainer"),
                s.get("explanation"),
                _number(scores.get("top_and_random")),
                _number(scores.get("random_only")),
                _number(floor.get("top_and_random")),
                _number(floor.get("random_only")),
                floor.get("from_neuron"),
                (s.get("heldout") or {}).get("tokens_top_and_random"),
                model,
                *det,
                *fuzz,
            )
        )
    return out


def layer_rows(
    layer: int,
    count: int,
    stats: dict[str, Any],
    records: dict[int, dict[str, Any]],
    llm_records: dict[int, dict[str, Any]] | None = None,
    llm_model: str | None = None,
) -> Iterator[tuple[Any, ...]]:
    """Rows of one layer: ``stats`` holds one array per :data:`STAT_KEYS` (``[d_mlp]``),
    ``records`` the offline explanation record of each explained neuron, ``llm_records`` the
    LLM's (model ``llm_model``)."""
    columns = [stats[k].tolist() for k in STAT_KEYS]  # one C-level conversion per array
    llm_records = llm_records or {}
    blank = [(None,) * N_SIDE]
    for n, st in enumerate(zip(*columns, strict=True)):
        st = tuple(None if v != v else v for v in st)  # NaN (non-finite neuron) -> NULL
        sides = side_values(records.get(n)) + side_values(llm_records.get(n), llm_model)
        for side in sides or blank:
            yield (layer, n, side[0], count, *st, *side[1:])


ByLayer = dict[int, dict[int, dict[str, Any]]]


def _by_layer(records: Iterable[dict[str, Any]]) -> ByLayer:
    by_layer: ByLayer = {}
    for rec in records:
        if rec.get("sides"):  # an LLM error record adds no row
            by_layer.setdefault(int(rec["layer"]), {})[int(rec["neuron"])] = rec
    return by_layer


def explanation_records(root: Path) -> ByLayer:
    """``{layer: {neuron: record}}`` of ``<atlas>/explanations`` (explained neurons only)."""
    from ..explain.output import read_explanations

    if not (root / EXPLANATIONS / EXPLANATIONS_MANIFEST).is_file():
        return {}
    return _by_layer(read_explanations(root)[1])


def llm_records(root: Path) -> tuple[ByLayer, str | None]:
    """``{layer: {neuron: record}}`` of ``<atlas>/explanations-llm`` and the LLM's model."""
    from ..explain.llm_output import read_llm_explanations

    if not (root / LLM_EXPLANATIONS / EXPLANATIONS_MANIFEST).is_file():
        return {}, None
    manifest, records = read_llm_explanations(root)
    model = ((manifest.get("params") or {}).get("explainer") or {}).get("model")
    return _by_layer(records), None if model is None else str(model)
