"""The explanations folder of an atlas: layout, manifest check and reader.

```
<atlas>/explanations/
  explanations.json     manifest: format, format_version, the atlas it explains (model, tokens,
                        sha256 of atlas.json), params (explainer, seed, random tokens, layers),
                        the held-out split in words, random_windows (every window of the
                        score-time forward), complete
  layers/layer_NNN.jsonl  one JSON object per neuron (sorted by neuron): layer, neuron, min, max,
                        sides[]: side ("positive" | "negative"), explainer, explanation (the
                        rendered line), tokens[{id, token, mean, count}] (the lookup table:
                        mean activation on the train split), output{source: "atlas write
                        scores", promotes[{id, token}]}, scores{top_and_random, random_only},
                        floor{from_neuron, top_and_random, random_only}, heldout{
                        example_windows (held-out top examples; bottom ones for the negative
                        side), random_windows_excluded, tokens_top_and_random,
                        tokens_random_only}. A score is null where Pearson's r is undefined.
  layers/layer_NNN.tables.safetensors  the full lookup tables (the simulators) of the layer:
                        ``{side}.ids / .means / .counts [d_mlp, top_tokens]`` (id -1: empty;
                        means on the side's scale, i.e. negated for the negative side); a
                        record's ``tokens`` are the first 3 of its row, ``table_size`` its length
  run.json              timings, device, dtype (the only file that differs between runs)
```

Each file is written atomically; a layer file exists only complete, so ``--resume`` redoes only
the layers without one and ends with the same bytes.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import BadArgumentError, RunExistsError, RunFormatError
from ..store.atomic import atomic_write_bytes
from .lookup import SIDES, LookupTable

FORMAT = "neuron-signatures explanations"
FORMAT_VERSION = 1
FOLDER = "explanations"
MANIFEST = "explanations.json"
LAYERS = "layers"
RUN_LOG = "run.json"


def layer_path(out: Path, layer: int) -> Path:
    return out / LAYERS / f"layer_{layer:03d}.jsonl"


def dumps(obj: Any) -> bytes:
    return (json.dumps(obj, indent=1, ensure_ascii=False, allow_nan=False) + "\n").encode()


def write_json(path: Path, obj: Any) -> None:
    atomic_write_bytes(path, dumps(obj))


def tables_path(out: Path, layer: int) -> Path:
    return out / LAYERS / f"layer_{layer:03d}.tables.safetensors"


def write_layer(
    out: Path, layer: int, records: list[dict[str, Any]], tables: dict[str, LookupTable]
) -> None:
    """The tables, then the records (a layer counts as done once its records exist)."""
    from safetensors.numpy import save

    arrays = {
        f"{side}.{name}": np.ascontiguousarray(getattr(t, name))
        for side, t in tables.items()
        for name in ("ids", "means", "counts")
    }
    atomic_write_bytes(tables_path(out, layer), save(dict(sorted(arrays.items()))))
    lines = (json.dumps(r, ensure_ascii=False, allow_nan=False) + "\n" for r in records)
    atomic_write_bytes(layer_path(out, layer), "".join(lines).encode())


def read_tables(atlas_root: str | Path, layer: int) -> dict[str, LookupTable]:
    """The lookup tables of ``layer`` per side (see the layout above)."""
    from safetensors.numpy import load_file

    path = tables_path(Path(atlas_root) / FOLDER, layer)
    if not path.is_file():
        raise RunFormatError(f"{path} is missing: rerun explain with --resume")
    t = load_file(str(path))
    return {
        side: LookupTable(t[f"{side}.ids"], t[f"{side}.means"], t[f"{side}.counts"])
        for side in SIDES
        if f"{side}.ids" in t
    }


def check_target(out: Path, manifest: dict[str, Any], *, resume: bool, overwrite: bool) -> str:
    """What to do with ``out`` for ``manifest``'s run, changing nothing: ``"new"``,
    ``"overwrite"`` (clear it first) or ``"resume"`` (same atlas and params; keep its layers).

    Raises:
        BadArgumentError: both flags, or a resume with other settings.
        RunExistsError: ``out`` holds explanations and neither flag was given.
    """
    if resume and overwrite:
        raise BadArgumentError("give --resume or --overwrite, not both")
    busy = out.is_dir() and any(out.iterdir())
    if not busy:
        return "new"
    if overwrite:
        return "overwrite"
    if not resume:
        raise RunExistsError(
            f"{out} already holds explanations: pass --resume to finish them or --overwrite to "
            "replace them"
        )
    if not (out / MANIFEST).is_file():  # killed before its manifest: nothing of it to trust
        return "overwrite"
    old = read_manifest(out)
    for key in ("atlas", "params"):
        if old.get(key) != manifest[key]:
            raise BadArgumentError(
                f"{out} was made with other {key} than these: rerun with the same flags, or "
                "--overwrite to start again"
            )
    return "resume"


def prepare(out: Path, manifest: dict[str, Any], action: str) -> None:
    """Apply :func:`check_target`'s ``action``: clear ``out`` and write the unfinished manifest,
    or keep a resumed folder as it is."""
    if action == "resume":
        return
    if action == "overwrite":
        shutil.rmtree(out)
    write_json(out / MANIFEST, {**manifest, "complete": False})


def read_manifest(out: Path) -> dict[str, Any]:
    path = out / MANIFEST
    if not path.is_file():
        raise RunFormatError(
            f"{out} holds no explanations: run `neuron-signatures explain --atlas {out.parent}`"
        )
    try:
        m = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise RunFormatError(
            f"{path} is unreadable ({e}): rerun explain with --overwrite"
        ) from None
    if m.get("format") != FORMAT or m.get("format_version") != FORMAT_VERSION:
        raise RunFormatError(f"{path} is not version-{FORMAT_VERSION} explanations: rerun explain")
    return dict(m)


def read_explanations(atlas_root: str | Path) -> tuple[dict[str, Any], Iterator[dict[str, Any]]]:
    """The manifest of ``<atlas>/explanations`` and an iterator over its neuron records."""
    out = Path(atlas_root) / FOLDER
    manifest = read_manifest(out)

    def records() -> Iterator[dict[str, Any]]:
        for layer in manifest["params"]["layers"]:
            path = layer_path(out, layer)
            if path.is_file():
                for line in path.read_text(encoding="utf-8").splitlines():
                    yield json.loads(line)

    return manifest, records()
