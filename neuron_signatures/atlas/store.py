"""The atlas folder: layout, atomic writes, the lock, checkpoints and the manifest check.

```
<atlas>/
  atlas.json                  manifest (model, corpus fingerprint, params, edges, progress)
  windows.safetensors         tokens [W, ctx_len] int32 (-1 past the end), length, doc, offset
  documents.jsonl             one line of metadata per corpus document (e.g. {"topic": ...})
  vocab.json                  token pieces by id (readers need no tokenizer)
  layers/layer_NNN.safetensors  one layer's reduction state (see reduce.to_disk)
  write_scores.safetensors    per layer: top / bottom logits of each neuron's write direction
  build.json                  timings and device of the build (the only non-deterministic file)
  checkpoint/                 while building: progress.json + step_NNNNNNNN/layer_NNN...
```

Every file is written to a temporary name, fsynced and renamed; a checkpoint's ``progress.json``
is written after its layer files, so a kill at any point leaves the previous checkpoint usable.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
from pathlib import Path
from typing import Any

from ..errors import RunExistsError, RunFormatError
from ..store.atomic import atomic_write_bytes
from ..store.claim import take_folder_lock

FORMAT = "neuron-signatures atlas"
# 2 added the sums of x^3, x^4 (skewness, kurtosis); 3: exact sums about per-batch pivots in a
# range without limit, the count of non-finite values, sampling priorities salted per neuron
FORMAT_VERSION = 3
# version 1 reads with NaN skewness and kurtosis; versions 1 and 2 with the non-finite count
# unknown (None) and one sampling priority per token; neither can be resumed or merged
READABLE_VERSIONS = (1, 2, 3)
MANIFEST = "atlas.json"
WINDOWS = "windows.safetensors"
DOCUMENTS = "documents.jsonl"
VOCAB = "vocab.json"
LAYERS = "layers"
WRITE_SCORES = "write_scores.safetensors"
BUILD_LOG = "build.json"
CHECKPOINT = "checkpoint"
LOCK = ".lock"
PARTS = "parts"  # a Ray build's units and spans (scale.units)
ATLAS_ENTRIES = {
    MANIFEST, WINDOWS, DOCUMENTS, VOCAB, LAYERS, WRITE_SCORES, BUILD_LOG, CHECKPOINT, PARTS
}  # fmt: skip


def layer_file(root: Path, layer: int) -> Path:
    return root / LAYERS / f"layer_{layer:03d}.safetensors"


def dumps(obj: Any) -> bytes:
    return (json.dumps(obj, indent=1, ensure_ascii=False) + "\n").encode()


def write_json(path: Path, obj: Any) -> None:
    atomic_write_bytes(path, dumps(obj))


def save_tensors(path: Path, tensors: dict[str, Any]) -> None:
    """Atomic safetensors write of CPU torch tensors (keys sorted: same bytes for same data)."""
    from safetensors.torch import save

    atomic_write_bytes(path, save(dict(sorted(tensors.items()))))


def load_tensors(path: Path) -> dict[str, Any]:
    """The tensors of ``path``, or :class:`RunFormatError` naming the file (missing, torn)."""
    from safetensors.torch import load_file

    try:
        return dict(load_file(str(path)))
    except Exception as e:  # OSError, or safetensors' own error for a torn or foreign file
        reason = (str(e).strip().splitlines() or [type(e).__name__])[0][:120]
        raise RunFormatError(f"{path} is unreadable ({reason}): rebuild that atlas") from None


def open_numpy(path: Path) -> Any:
    """``path`` opened lazily with numpy arrays (``safe_open``): a context manager whose
    ``get_tensor`` / ``get_slice`` read one tensor or a few rows, never the whole file."""
    from safetensors import safe_open

    return safe_open(str(path), framework="numpy")


def read_manifest(root: Path) -> dict[str, Any]:
    """``atlas.json`` of ``root``, or :class:`RunFormatError` naming the problem."""
    path = root / MANIFEST
    if root.is_file():
        raise RunFormatError(f"{root} is a file: give the atlas folder ({root.parent})")
    if not path.is_file():
        raise RunFormatError(
            f"{root} is not an atlas (no {MANIFEST}): build one with `neuron-signatures atlas`"
        )
    try:
        m = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise RunFormatError(f"{path} is unreadable ({e}): rebuild the atlas") from None
    if m.get("format") != FORMAT or int(m.get("format_version", 0)) not in READABLE_VERSIONS:
        raise RunFormatError(
            f"{path} is not a version-{FORMAT_VERSION} atlas: rebuild it with this version"
        )
    return m


def check_target(root: Path, *, resume: bool, overwrite: bool) -> dict[str, Any] | None:
    """What is in ``root`` and whether these flags may use it; returns the old manifest on resume.

    Raises:
        RunExistsError: the folder holds files that the flags do not allow using or replacing.
    """
    if root.exists() and not root.is_dir():
        raise RunExistsError(f"--out_dir {root} is a file: give a folder")
    empty = not root.exists() or {p.name for p in root.iterdir()} <= {LOCK}
    if empty and resume:
        raise RunExistsError(f"nothing to resume in {root} (no atlas there): drop --resume")
    if empty:
        return None
    is_atlas = (root / MANIFEST).is_file()
    ray_build = (root / PARTS / "static" / MANIFEST).is_file()  # scale.units: resumable
    # A build killed before it wrote atlas.json (static files first, a merge, parts/static):
    stopped = not (is_atlas or ray_build) and only_atlas_files(root)
    if stopped and not overwrite:
        raise RunExistsError(
            f"{root} holds the files of an atlas build stopped before it wrote {MANIFEST} "
            "(nothing to resume): start again with --overwrite, or use another --out_dir"
        )
    if resume:
        if not is_atlas:
            how = "resume it with --engine ray" if ray_build else "drop --resume or fix --out_dir"
            raise RunExistsError(f"{root} is not an atlas to resume: {how}")
        old = read_manifest(root)
        if int(old["format_version"]) != FORMAT_VERSION:
            raise RunFormatError(
                f"{root} is a version-{old['format_version']} atlas and cannot be resumed by this "
                f"version ({FORMAT_VERSION}): rebuild it with --overwrite"
            )
        return old
    if overwrite:
        if not (is_atlas or stopped or ray_build):
            raise RunExistsError(f"{root} holds files but no atlas: refusing to --overwrite it")
        return None
    raise RunExistsError(
        f"{root} already holds files: pass --resume to finish it, --overwrite to replace an atlas, "
        "or another --out_dir"
    )


def _own_temp(name: str) -> bool:
    """A temporary file of an atomic write of an atlas file (``.atlas.json.x1y2.tmp``)."""
    return name.endswith(".tmp") and any(name.startswith(f".{e}.") for e in ATLAS_ENTRIES)


def only_atlas_files(root: Path) -> bool:
    """Whether every entry of ``root`` is an atlas file, its temporary file or the lock."""
    return all(p.name in ATLAS_ENTRIES | {LOCK} or _own_temp(p.name) for p in root.iterdir())


def clear(root: Path) -> None:
    """Remove the atlas's own files and their temporary files (and nothing else) from ``root``."""
    if not root.is_dir():
        return
    for p in root.iterdir():
        if p.name in ATLAS_ENTRIES or _own_temp(p.name):
            if p.is_dir() and not p.is_symlink():
                shutil.rmtree(p)
            else:
                p.unlink()


class Lock:
    """An exclusive ``flock`` on ``<atlas>/.lock`` held while building (the dump's lock)."""

    def __init__(self, root: Path) -> None:
        root.mkdir(parents=True, exist_ok=True)
        self._fd = take_folder_lock(root / LOCK, f"another atlas build{{pid}} is writing {root}")

    def release(self) -> None:
        if self._fd >= 0:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = -1

    def __enter__(self) -> Lock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def save_checkpoint(
    root: Path, step: int, layers: dict[int, dict[str, Any]], progress: dict[str, Any]
) -> None:
    """Write every layer's state into ``checkpoint/step_<step>/``, then point
    ``checkpoint/progress.json`` at it, then drop older steps."""
    base = root / CHECKPOINT
    folder = base / f"step_{step:08d}"
    for layer, tensors in layers.items():
        save_tensors(folder / f"layer_{layer:03d}.safetensors", tensors)
    write_json(base / "progress.json", {**progress, "folder": folder.name})
    for old in base.iterdir():
        if old.is_dir() and old.name != folder.name:
            shutil.rmtree(old)


def load_checkpoint(root: Path, layers: list[int]) -> tuple[dict[str, Any], dict[int, Any]] | None:
    """``(progress, {layer: tensors})`` of the last complete checkpoint, or ``None``."""
    path = root / CHECKPOINT / "progress.json"
    if not path.is_file():
        return None
    progress = json.loads(path.read_text(encoding="utf-8"))
    folder = root / CHECKPOINT / progress["folder"]
    return progress, {
        layer: load_tensors(folder / f"layer_{layer:03d}.safetensors") for layer in layers
    }


def first_difference(old: Any, new: Any, path: str = "") -> str | None:
    """``"params.top_k: 20 (atlas) vs 10 (now)"`` for the first differing leaf, else ``None``."""
    if isinstance(old, dict) and isinstance(new, dict):
        for key in sorted(set(old) | set(new)):
            sub = f"{path}.{key}" if path else str(key)
            if key not in old or key not in new:
                a, b = old.get(key, "missing"), new.get(key, "missing")
                return f"{sub}: {a!r} (atlas) vs {b!r} (now)"
            diff = first_difference(old[key], new[key], sub)
            if diff:
                return diff
        return None
    if old != new:
        o, n = json.dumps(old)[:80], json.dumps(new)[:80]
        return f"{path}: {o} (atlas) vs {n} (now)"
    return None
