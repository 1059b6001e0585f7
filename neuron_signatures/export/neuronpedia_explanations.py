"""Neuronpedia ``Explanation`` rows of an atlas's explanations, and the rows they name.

Transcribed from ``hijohnnylin/neuronpedia``: ``apps/webapp/prisma/schema.prisma`` (models
``Explanation``, ``ExplanationType``, ``ExplanationModelType``), the importer
``apps/webapp/app/api/admin/import/route.ts`` (every ``explanations/*.jsonl.gz`` of a source goes
to table ``Explanation`` as is, so a row may hold only that table's columns) and its config import
``lib/db/import.ts`` (``explanation_type.jsonl`` / ``explanation_model_type.jsonl`` upserted by
``name`` from its ``config/`` folder; ``utils/neuronpedia-utils/.../export-data.py`` writes them to
``exports/config/``).

1. One ``Explanation`` row per explained side of a neuron, the offline explainer's then the
   LLM's where both ran: ``id`` (a cuid-like hash of model, layer, neuron, explainer and side:
   the same on every export), ``modelId``, ``layer``, ``index``,
   ``description`` (the rendered explanation; the negative side's says ``goes negative on``),
   ``authorId`` (Neuronpedia's seeded bot user), ``typeName``, ``explanationModelName``, and
   ``notes`` naming the side and that scores are in the side file.
2. ``typeName`` is ``neuron-signatures-<explainer>`` (``neuron-signatures-token-lookup`` offline)
   and ``explanationModelName`` the model that wrote it (the LLM's name, else the explainer's):
   each source folder holds their ``ExplanationType`` and ``ExplanationModelType`` rows in
   ``explanation_type.jsonl`` / ``explanation_model_type.jsonl``; copy them into the importer's
   ``config/`` folder (or create the rows) before importing, as ``typeName`` and
   ``explanationModelName`` reference those tables.
3. Scores are not Explanation columns (``scoreV1`` is a deprecated default-0 column) and the
   importer loads no ``ExplanationScore`` rows; every score, floor and held-out size is in the
   source folder's ``explanation_scores.jsonl`` (:mod:`.explanation_rows`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..store.atomic import atomic_write_bytes
from .explanation_rows import (
    SCORES_FILE,
    Record,
    explained_neurons,
    explainer_model,
    score_lines,
    score_row,
)
from .neuronpedia_rows import CREATOR_ID, CREATOR_NAME, Row, jsonl_bytes

TYPE_FILE, MODEL_TYPE_FILE = "explanation_type.jsonl", "explanation_model_type.jsonl"
TYPE_PREFIX = "neuron-signatures-"


def type_name(side: Record) -> str:
    return TYPE_PREFIX + str(side["explainer"])


def explanation_row(mid: str, rec: Record, side: Record, model: str) -> Row:
    """The ``Explanation`` row of one explained side (rule 1)."""
    who = f"{side['explainer']}/{side['side']}"
    key = f"{mid}/{rec['layer']}/{rec['neuron']}/explanation/{who}".encode()
    return {
        "id": "c" + hashlib.sha1(key).hexdigest()[:24],
        "modelId": mid,
        "layer": str(rec["layer"]),
        "index": str(rec["neuron"]),
        "description": side["explanation"],
        "authorId": CREATOR_ID,
        "notes": f"{side['side']} side; scores in explanation_scores.jsonl",
        "typeName": type_name(side),
        "explanationModelName": model,
    }


def type_row(name: str, explainer: str) -> Row:
    """The ``ExplanationType`` row ``typeName`` names."""
    return {
        "name": name,
        "displayName": f"neuron-signatures {explainer}",
        "description": (
            f"neuron-signatures' {explainer} explainer, scored by Pearson's r on held-out "
            "windows (top-and-random, random-only) with a floor from another neuron's explanation"
        ),
        "creatorName": CREATOR_NAME,
        "creatorId": CREATOR_ID,
    }


def model_type_row(name: str) -> Row:
    """The ``ExplanationModelType`` row ``explanationModelName`` names."""
    return {
        "name": name,
        "displayName": name,
        "description": f"explanations written by {name} (neuron-signatures)",
        "creatorName": CREATOR_NAME,
    }


class ExplanationWriter:
    """The explanations of the exported neurons, read once, written per layer and batch."""

    def __init__(self, atlas_root: str | Path, neurons: Sequence[tuple[int, int]], mid: str):
        self.mid = mid
        _, self.found = explained_neurons(atlas_root, neurons)

    def _sides(self, layer: int, indices: Sequence[int]) -> list[tuple[Record, Record, str]]:
        return [
            (rec, side, explainer_model(side))
            for n in indices
            if (rec := self.found.get((layer, n))) is not None
            for side in rec["sides"]
        ]

    def rows(self, layer: int, indices: Sequence[int]) -> list[Row]:
        """``Explanation`` rows of one batch of neurons (positive side first)."""
        return [explanation_row(self.mid, r, s, m) for r, s, m in self._sides(layer, indices)]

    def write_side_files(self, source_dir: Path, layer: int) -> None:
        """The type rows and ``explanation_scores.jsonl`` of one source folder (rules 2-3)."""
        sides = self._sides(layer, sorted(n for la, n in self.found if la == layer))
        types: dict[str, Any] = {}
        models: dict[str, Any] = {}
        for _, side, model in sides:
            types.setdefault(type_name(side), type_row(type_name(side), side["explainer"]))
            models.setdefault(model, model_type_row(model))
        atomic_write_bytes(source_dir / TYPE_FILE, jsonl_bytes([types[k] for k in sorted(types)]))
        atomic_write_bytes(
            source_dir / MODEL_TYPE_FILE, jsonl_bytes([models[k] for k in sorted(models)])
        )
        scores = [score_row(r, s, m) for r, s, m in sides]
        atomic_write_bytes(source_dir / SCORES_FILE, score_lines(scores))
