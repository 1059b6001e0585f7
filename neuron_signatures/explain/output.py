"""The explanations folder of an atlas: layout, manifest check and reader.

```
<atlas>/explanations/
  .lock                 held (flock) by the run writing the folder: a second run is refused
  explanations.json     manifest: format, format_version, the atlas it explains (model, tokens,
                        sha256 of atlas.json), params (explainer, seed, random tokens, layers),
                        the held-out split in words, random_windows (every window of the
                        score-time forward), complete; once complete, ``chosen``: per layer the
                        parameters chosen on the train split's validation slice (top_tokens,
                        prior, validation medians, neurons that keep contexts)
  layers/layer_NNN.jsonl  one JSON object per neuron (sorted by neuron): layer, neuron, min, max,
                        sides[]: side ("positive" | "negative"), explainer, explanation (the
                        rendered line), tokens[{id, token, mean, count}] (the lookup table:
                        mean activation on the train split), output{source: "atlas write
                        scores", promotes[{id, token}]}, contexts[{prev_id, prev, id, token,
                        mean, count}] (the first contexts that raise the activation; version
                        2), context_table_size (version 2), scores{top_and_random, random_only},
                        floor{from_neuron, top_and_random, random_only}, heldout{
                        example_windows (held-out top examples; bottom ones for the negative
                        side), random_windows_excluded, tokens_top_and_random,
                        tokens_random_only}. A score is null where Pearson's r is undefined.
  layers/layer_NNN.tables.safetensors  the full lookup tables (the simulators) of the layer:
                        ``{side}.ids / .means / .counts [d_mlp, top_tokens]`` (id -1: empty;
                        means on the side's scale, i.e. negated for the negative side) and,
                        version 2, the contexts ``{side}.ctx_prev / .ctx_ids / .ctx_means /
                        .ctx_counts [d_mlp, k_ctx]``; ids and counts int32, means float32 (the
                        scores used these rounded means); the metadata holds the layer's chosen
                        parameters. A record's ``tokens`` are the first 3 of its row,
                        ``table_size`` its length
  run.json              timings, device, dtype (the only file that differs between runs)
```

Each file is written atomically; a layer file exists only complete, so ``--resume`` redoes only
the layers without one and ends with the same bytes. Version 1 folders (no contexts, float64
tables, no ``chosen``) still read.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import BadArgumentError, RunExistsError, RunFormatError
from ..store.atomic import atomic_write_bytes
from ..store.claim import take_folder_lock
from .lookup import CTX_FIELDS, SIDES, LookupTable

FORMAT = "neuron-signatures explanations"
FORMAT_VERSION = 2
READABLE_VERSIONS = (1, 2)
FOLDER = "explanations"
MANIFEST = "explanations.json"
LAYERS = "layers"
RUN_LOG = "run.json"
LOCK = ".lock"
TABLE_DTYPES = {"ids": np.int32, "counts": np.int32, "means": np.float32}


class FolderLock:
    """An exclusive ``flock`` on ``<out>/.lock`` (:func:`..store.claim.take_folder_lock`, the
    dump's and the atlas build's lock) held while a run writes ``out``; a second run on the same
    folder raises :class:`RunLockedError`. Leaving it releases the lock and removes ``out``
    again when this run created it and wrote nothing else."""

    def __init__(self, out: Path) -> None:
        self.out = out
        self.created = not out.exists()
        out.mkdir(parents=True, exist_ok=True)
        self._fd = take_folder_lock(
            out / LOCK,
            f"another explain run{{pid}} is writing {out}",
            "wait for it to finish, then rerun with --resume or --overwrite",
        )

    def release(self) -> None:
        if self._fd < 0:
            return
        if self.created and [p.name for p in self.out.iterdir()] == [LOCK]:
            (self.out / LOCK).unlink()
            self.out.rmdir()
        fcntl.flock(self._fd, fcntl.LOCK_UN)
        os.close(self._fd)
        self._fd = -1

    def __enter__(self) -> FolderLock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def layer_path(out: Path, layer: int) -> Path:
    return out / LAYERS / f"layer_{layer:03d}.jsonl"


def dumps(obj: Any) -> bytes:
    return (json.dumps(obj, indent=1, ensure_ascii=False, allow_nan=False) + "\n").encode()


def write_json(path: Path, obj: Any) -> None:
    atomic_write_bytes(path, dumps(obj))


def tables_path(out: Path, layer: int) -> Path:
    return out / LAYERS / f"layer_{layer:03d}.tables.safetensors"


def write_layer(
    out: Path,
    layer: int,
    records: list[dict[str, Any]],
    tables: dict[str, LookupTable],
    chosen: dict[str, Any] | None = None,
) -> None:
    """The tables (``chosen``, the layer's parameters, in their metadata), then the records (a
    layer counts as done once its records exist)."""
    from safetensors.numpy import save

    arrays = {
        f"{side}.{name}": np.ascontiguousarray(
            getattr(t, name).astype(TABLE_DTYPES[name.removeprefix("ctx_").replace("prev", "ids")])
        )
        for side, t in tables.items()
        for name in ("ids", "means", "counts", *CTX_FIELDS)
    }
    meta = {"chosen": json.dumps(chosen, sort_keys=True)} if chosen is not None else None
    atomic_write_bytes(tables_path(out, layer), save(dict(sorted(arrays.items())), meta))
    lines = (json.dumps(r, ensure_ascii=False, allow_nan=False) + "\n" for r in records)
    atomic_write_bytes(layer_path(out, layer), "".join(lines).encode())


def read_tables(atlas_root: str | Path, layer: int) -> dict[str, LookupTable]:
    """The lookup tables of ``layer`` per side (see the layout above; version 1 files have no
    contexts), ids and counts int64, means float64."""
    from safetensors.numpy import load_file

    path = tables_path(Path(atlas_root) / FOLDER, layer)
    if not path.is_file():
        raise RunFormatError(f"{path} is missing: rerun explain with --resume")
    t = load_file(str(path))
    out = {}
    for side in SIDES:
        if f"{side}.ids" not in t:
            continue
        cols = {
            name: t[f"{side}.{name}"].astype(np.float64 if "means" in name else np.int64)
            for name in ("ids", "means", "counts", *CTX_FIELDS)
            if f"{side}.{name}" in t
        }
        out[side] = LookupTable(**cols)
    return out


def read_chosen(out: Path, layer: int) -> dict[str, Any] | None:
    """The parameters chosen for ``layer`` (the tables' metadata; ``None`` in version 1)."""
    from safetensors import safe_open

    with safe_open(str(tables_path(out, layer)), "numpy") as f:
        meta = f.metadata() or {}
    return json.loads(meta["chosen"]) if "chosen" in meta else None


def check_target(out: Path, manifest: dict[str, Any], *, resume: bool, overwrite: bool) -> str:
    """What to do with ``out`` for ``manifest``'s run, changing nothing: ``"new"``,
    ``"overwrite"`` (clear it first) or ``"resume"`` (same atlas and params; keep its layers).

    Raises:
        BadArgumentError: both flags, or a resume with other settings.
        RunExistsError: ``out`` holds explanations and neither flag was given.
    """
    if resume and overwrite:
        raise BadArgumentError("give --resume or --overwrite, not both")
    busy = out.is_dir() and any(p.name != LOCK for p in out.iterdir())
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
    if action == "overwrite":  # everything but the lock this run holds
        for p in out.iterdir():
            if p.name == LOCK:
                continue
            if p.is_dir() and not p.is_symlink():
                shutil.rmtree(p)
            else:
                p.unlink()
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
    if m.get("format") != FORMAT or m.get("format_version") not in READABLE_VERSIONS:
        raise RunFormatError(
            f"{path} is not explanations of version {READABLE_VERSIONS}: rerun explain with "
            "--overwrite"
        )
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
