"""The LLM explanations folder: ``<atlas>/explanations-llm/`` in :mod:`.output`'s layout
(manifest + ``layers/layer_NNN.jsonl``, no lookup tables) and the response cache beside it.

The LLM and the offline explainer write separate folders, so neither run's ``--overwrite``
removes the other's output; the cache (``<atlas>/llm-cache/``) is outside both, so an
``--overwrite`` rerun sends nothing. A record of a neuron whose requests failed holds
``"error"`` (and no sides): :func:`failed` counts them for ``--resume``, :func:`summary` says so
in one line.

Record versions (``params.explainer.record_version`` in the manifest; absent means 1):
1: a side holds the simulation ``scores`` and ``floor``; 2: a side may also hold
``classifiers.{detection,fuzzing}``: ``balanced_accuracy``, ``auc`` (null where the server gave
no logprobs), ``method`` (``logprobs`` / ``parsed``), ``n_invalid``, ``floor{from_neuron,
balanced_accuracy, auc, n_invalid}``, ``n_windows{activating, non_activating}`` and the
``windows`` themselves; the manifest names the scorers run (``params.explainer.scorers``), and
the simulation scores are null when it was not among them. Both versions read.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..errors import RunFormatError
from ..store.atomic import atomic_write_bytes
from .output import layer_path

FOLDER = "explanations-llm"
CACHE = "llm-cache"
RECORD_VERSION = 2
READABLE = (1, 2)


def record_version(manifest: dict[str, Any]) -> int:
    """The record version of an LLM explanations manifest (1 when it names none).

    Raises:
        RunFormatError: a version this code cannot read (made by a newer neuron-signatures).
    """
    v = (manifest.get("params") or {}).get("explainer", {}).get("record_version", 1)
    if v not in READABLE:
        raise RunFormatError(
            f"{FOLDER} holds version-{v} records, this neuron-signatures reads {READABLE}: "
            "upgrade it, or rerun explain --explainer llm with --overwrite"
        )
    return int(v)


def write_records(out: Path, layer: int, records: list[dict[str, Any]]) -> None:
    """The layer's records, atomically (a layer file exists only complete)."""
    lines = (json.dumps(r, ensure_ascii=False, allow_nan=False) + "\n" for r in records)
    atomic_write_bytes(layer_path(out, layer), "".join(lines).encode())


def failed(out: Path, layer: int) -> int:
    """Neurons of a written layer file that hold an error (0 when the file is missing)."""
    path = layer_path(out, layer)
    if not path.is_file():
        return 0
    lines = path.read_text(encoding="utf-8").splitlines()
    return sum("error" in json.loads(line) for line in lines)


def summary(out: Path, layers: list[int]) -> str:
    """One line on the failed neurons of ``layers`` (empty when none failed)."""
    bad: list[dict[str, Any]] = []
    for layer in layers:
        path = layer_path(out, layer)
        if path.is_file():
            rows = (json.loads(x) for x in path.read_text(encoding="utf-8").splitlines())
            bad += [r for r in rows if "error" in r]
    if not bad:
        return ""
    first = bad[0]
    return (
        f"{len(bad)} neuron(s) failed (first L{first['layer']}/N{first['neuron']}: "
        f"{first['error'][:160]}): rerun with --resume to retry only them"
    )


def read_llm_explanations(atlas_root: str | Path) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The manifest of ``<atlas>/explanations-llm`` and its neuron records."""
    from .output import read_manifest

    out = Path(atlas_root) / FOLDER
    manifest = read_manifest(out)
    record_version(manifest)
    recs = []
    for layer in manifest["params"]["layers"]:
        path = layer_path(out, layer)
        if path.is_file():
            recs += [json.loads(x) for x in path.read_text(encoding="utf-8").splitlines()]
    return manifest, recs
