"""The LLM explanations folder: ``<atlas>/explanations-llm/`` in :mod:`.output`'s layout
(manifest + ``layers/layer_NNN.jsonl``, no lookup tables) and the response cache beside it.

The LLM and the offline explainer write separate folders, so neither run's ``--overwrite``
removes the other's output; the cache (``<atlas>/llm-cache/``) is outside both, so an
``--overwrite`` rerun sends nothing. A record of a neuron whose requests failed holds
``"error"`` (and no sides): :func:`failed` counts them for ``--resume``, :func:`summary` says so
in one line.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..store.atomic import atomic_write_bytes
from .output import layer_path

FOLDER = "explanations-llm"
CACHE = "llm-cache"


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
    recs = []
    for layer in manifest["params"]["layers"]:
        path = layer_path(out, layer)
        if path.is_file():
            recs += [json.loads(x) for x in path.read_text(encoding="utf-8").splitlines()]
    return manifest, recs
