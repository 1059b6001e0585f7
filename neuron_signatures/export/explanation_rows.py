"""The explanations of exported neurons, read once for every export format, and their score rows.

Both exports of explanations (OpenAI's ``NeuronSimulationResults``, Neuronpedia's ``Explanation``
rows) read ``<atlas>/explanations`` (:mod:`..explain.output`) through :func:`explained_neurons`
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


def has_explanations(atlas_root: str | Path) -> bool:
    """Whether the atlas holds an explanations manifest (``neuron-signatures explain`` ran)."""
    from ..explain.output import FOLDER, MANIFEST

    return (Path(atlas_root) / FOLDER / MANIFEST).is_file()


def explained_neurons(
    atlas_root: str | Path, neurons: Iterable[tuple[int, int]]
) -> tuple[dict[str, Any], dict[tuple[int, int], Record]]:
    """The explanations manifest and ``{(layer, neuron): record}`` of the wanted neurons that
    have at least one explained side (records as :mod:`..explain.output` describes them).

    Raises:
        RunFormatError: the atlas has no explanations (the message names the command).
    """
    from ..explain.output import FOLDER, layer_path, read_manifest

    wanted = {(int(la), int(n)) for la, n in neurons}
    folder = Path(atlas_root) / FOLDER
    manifest = read_manifest(folder)
    out: dict[tuple[int, int], Record] = {}
    for layer in sorted({la for la, _ in wanted} & set(manifest["params"]["layers"])):
        path = layer_path(folder, layer)  # only the layers exported are parsed
        if not path.is_file():
            continue
        for line in path.read_text(encoding="utf-8").splitlines():
            rec = json.loads(line)
            key = (int(rec["layer"]), int(rec["neuron"]))
            if key in wanted and rec.get("sides"):
                out[key] = rec
    return manifest, out


def require_some(found: dict[tuple[int, int], Record], atlas_root: str | Path) -> None:
    """Raise when none of the exported neurons has an explanation."""
    if not found:
        raise RunFormatError(
            f"none of the exported neurons of {atlas_root} has an explanation: run "
            f"`neuron-signatures explain --atlas {atlas_root} --resume` (or pick --layers it "
            "explained)"
        )


def explainer_model(manifest: dict[str, Any], side: Record) -> str:
    """The model that wrote a side's explanation: the LLM's name (``params.explainer.model``),
    or the offline explainer's name."""
    explainer = manifest.get("params", {}).get("explainer")
    llm = explainer.get("model") if isinstance(explainer, dict) else None
    return str(side.get("model") or llm or side["explainer"])


def score_row(rec: Record, side: Record, model: str) -> Record:
    """One line of ``explanation_scores.jsonl``: every score of one explained side (the
    correlations, and the LLM scorers' where they ran), its floor and the held-out sizes (a score
    is ``null`` where it is undefined)."""
    held = side.get("heldout", {})
    return {
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


def score_lines(rows: list[Record]) -> bytes:
    return "".join(json.dumps(r, ensure_ascii=False, allow_nan=False) + "\n" for r in rows).encode()
