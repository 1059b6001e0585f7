"""The explanations of exported neurons, read once for every export format, and their score rows.

Both exports of explanations (OpenAI's ``NeuronSimulationResults``, Neuronpedia's ``Explanation``
rows) read ``<atlas>/explanations`` (offline, :mod:`..explain.output`) and
``<atlas>/explanations-llm`` (:mod:`..explain.llm_output`) through :func:`explained_neurons`
and write the scores their own schema has no place for (the floor, the random-only score, the
held-out sizes) through :func:`score_row`, one JSON line per neuron and side in
``explanation_scores.jsonl``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from ..errors import RunFormatError

SCORES_FILE = "explanation_scores.jsonl"

Record = dict[str, Any]


def _folders(atlas_root: str | Path) -> list[Path]:
    """The explanations folders of the atlas that hold a manifest: offline first, then LLM."""
    from ..explain.llm_output import FOLDER as LLM_FOLDER
    from ..explain.output import FOLDER, MANIFEST

    dirs = [Path(atlas_root) / FOLDER, Path(atlas_root) / LLM_FOLDER]
    return [d for d in dirs if (d / MANIFEST).is_file()]


def has_explanations(atlas_root: str | Path) -> bool:
    """Whether the atlas holds explanations (``explain`` ran, with either explainer)."""
    return bool(_folders(atlas_root))


def _llm_model(manifest: dict[str, Any]) -> str | None:
    explainer = manifest.get("params", {}).get("explainer")
    return explainer.get("model") if isinstance(explainer, dict) else None


def explained_neurons(
    atlas_root: str | Path, neurons: Iterable[tuple[int, int]]
) -> tuple[dict[str, Any], dict[tuple[int, int], Record]]:
    """``{folder name: {atlas, params}}`` of the explanations read and ``{(layer, neuron):
    record}`` of the wanted neurons with at least one explained side, the sides of
    ``explanations/`` (offline) first, then those of ``explanations-llm/``; each side carries
    ``model``, the LLM that wrote it (``params.explainer.model``) where its folder names one.

    Raises:
        RunFormatError: the atlas has no explanations (the message names the command).
    """
    from ..explain.output import FOLDER, layer_path, read_manifest

    wanted = {(int(la), int(n)) for la, n in neurons}
    folders = _folders(atlas_root) or [Path(atlas_root) / FOLDER]  # read_manifest names the fix
    made: dict[str, Any] = {}
    out: dict[tuple[int, int], Record] = {}
    for folder in folders:
        manifest = read_manifest(folder)
        made[folder.name] = {k: manifest.get(k) for k in ("atlas", "params")}
        model = _llm_model(manifest)
        for layer in sorted({la for la, _ in wanted} & set(manifest["params"]["layers"])):
            path = layer_path(folder, layer)  # only the layers exported are parsed
            if not path.is_file():
                continue
            for line in path.read_text(encoding="utf-8").splitlines():
                rec = json.loads(line)
                key = (int(rec["layer"]), int(rec["neuron"]))
                if key not in wanted or not rec.get("sides"):
                    continue
                sides = [s if model is None else {"model": model, **s} for s in rec["sides"]]
                if key in out:
                    out[key]["sides"] += sides
                else:
                    out[key] = {**rec, "sides": sides}
    return made, out


def require_some(found: dict[tuple[int, int], Record], atlas_root: str | Path) -> None:
    """Raise when none of the exported neurons has an explanation."""
    if not found:
        raise RunFormatError(
            f"none of the exported neurons of {atlas_root} has an explanation: run "
            f"`neuron-signatures explain --atlas {atlas_root} --resume` (or pick --layers it "
            "explained)"
        )


def explainer_model(side: Record) -> str:
    """The model that wrote a side's explanation: the LLM's name, or the offline explainer's."""
    return str(side.get("model") or side["explainer"])


def score_row(rec: Record, side: Record, model: str) -> Record:
    """One line of ``explanation_scores.jsonl``: every score of one explained side (the
    correlations, and the LLM's detection and fuzzing under ``classifiers`` where they ran:
    balanced accuracy, AUC, method, floor, window counts), its floor and the held-out sizes (a
    score is ``null`` where it is undefined)."""
    held = side.get("heldout", {})
    row: Record = {
        "layer": int(rec["layer"]),
        "neuron": int(rec["neuron"]),
        "side": side["side"],
        "explainer": side["explainer"],
        "explanation_model": model,
        "explanation": side["explanation"],
        "scores": dict(side["scores"]),
        "floor": dict(side.get("floor", {})),
        "heldout_tokens": {
            "top_and_random": held.get("tokens_top_and_random"),
            "random_only": held.get("tokens_random_only"),
        },
    }
    classifiers = side.get("classifiers") or {}
    if classifiers:  # detection and fuzzing (LLM record version 2), without the window ids
        row["classifiers"] = {
            kind: {k: v for k, v in c.items() if k != "windows"} for kind, c in classifiers.items()
        }
    return row


def score_lines(rows: list[Record]) -> bytes:
    return "".join(json.dumps(r, ensure_ascii=False, allow_nan=False) + "\n" for r in rows).encode()
