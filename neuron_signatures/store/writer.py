"""Write a run folder: lock, manifest, shards written atomically, resume and completion.

1. ``RunWriter.open`` takes the folder's lock, then starts a new run, resumes one whose inputs
   match (same fingerprint), or clears an old run on ``overwrite``.
2. The manifest is written first with every prompt's shard and offset already planned, and
   ``complete: false``.
3. Each ``write_shard`` serialises one batch (one ``layer_<l>`` tensor per captured layer), hashes
   the bytes, writes them under a temporary name, fsyncs and renames; then it appends the shard's
   size and sha256 to ``activations/progress.jsonl`` (fsynced). A kill at any point leaves every
   logged shard whole; ``--resume`` keeps those and rewrites the rest.
4. ``finish`` records every shard's size and hash in the manifest, marks it complete and removes
   the log. Readers refuse incomplete runs.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import struct
from pathlib import Path
from typing import Any

from ..errors import RunExistsError, RunFormatError, RunLockedError
from .manifest import (
    ACTIVATIONS_DIR,
    LEGACY_FILE,
    MANIFEST,
    atomic_write_chunks,
    atomic_write_json,
    read_manifest,
    utc_now,
)

LOCK_FILE = ".lock"
PROGRESS_FILE = "progress.jsonl"
_RUN_FILES = {MANIFEST, ACTIVATIONS_DIR, LEGACY_FILE, LOCK_FILE, "analysis"}


def shard_name(index: int) -> str:
    return f"shard_{index:05d}.safetensors"


class RunWriter:
    """Owns a run folder while a dump writes it. Use as a context manager."""

    def __init__(self, run_dir: Path, manifest: dict[str, Any], lock_fd: int) -> None:
        self.run_dir = run_dir
        self.manifest = manifest
        self._lock_fd = lock_fd

    # -- opening ---------------------------------------------------------------------------
    @classmethod
    def open(
        cls,
        run_dir: str | Path,
        manifest: dict[str, Any],
        *,
        resume: bool = False,
        overwrite: bool = False,
    ) -> RunWriter:
        """Start or resume the run described by ``manifest`` (which must hold ``fingerprint``).

        Raises:
            RunExistsError: the folder holds files and neither flag allows using it.
            RunLockedError: another dump holds the lock.
        """
        path = Path(run_dir)
        path.mkdir(parents=True, exist_ok=True)
        lock_fd = _take_lock(path)
        try:
            merged = cls._prepare(path, manifest, resume=resume, overwrite=overwrite)
        except BaseException:
            os.close(lock_fd)
            raise
        writer = cls(path, merged, lock_fd)
        writer._save_manifest()
        return writer

    @staticmethod
    def _prepare(
        path: Path, manifest: dict[str, Any], *, resume: bool, overwrite: bool
    ) -> dict[str, Any]:
        existing = [p for p in path.iterdir() if p.name != LOCK_FILE]
        if not existing:
            return manifest
        has_manifest = (path / MANIFEST).is_file()
        if overwrite:
            if not has_manifest:
                raise RunExistsError(
                    f"{path} is not empty and is not a run folder; refusing to delete its files: "
                    "pick an empty or new --out_dir"
                )
            for p in existing:
                if p.name in _RUN_FILES or p.name.startswith(f".{MANIFEST}."):
                    shutil.rmtree(p) if p.is_dir() else p.unlink()
            return manifest
        if not resume:
            raise RunExistsError(
                f"{path} is not empty: pass --resume to finish an interrupted dump, --overwrite "
                "to replace it, or pick another --out_dir"
            )
        if not has_manifest:
            raise RunExistsError(f"{path} has no manifest.json to resume: use a new --out_dir")
        old = read_manifest(path)
        if old.get("fingerprint") != manifest.get("fingerprint"):
            raise RunExistsError(
                f"{path} was dumped with other prompts, model or settings; --resume needs the "
                "same command: use --overwrite or another --out_dir"
            )
        # Keep the original creation time and every shard the progress log shows whole.
        merged = dict(manifest)
        merged["created_at_utc"] = old.get("created_at_utc", manifest.get("created_at_utc"))
        merged["shards"] = [dict(s) for s in manifest["shards"]]
        for index, size, digest in _read_progress(path):
            if 0 <= index < len(merged["shards"]):
                entry = merged["shards"][index]
                entry["bytes"], entry["sha256"] = size, digest
                if not _shard_is_whole(path, entry):
                    entry["bytes"] = entry["sha256"] = None
        merged["resumed_at_utc"] = utc_now()
        return merged

    @staticmethod
    def check_target(run_dir: str | Path, *, resume: bool, overwrite: bool) -> None:
        """Fail early (before loading a model) when ``run_dir`` cannot be written."""
        path = Path(run_dir)
        if path.exists() and not path.is_dir():
            raise RunExistsError(f"{path} is a file, not a folder: pick another --out_dir")
        busy = path.is_dir() and any(p.name != LOCK_FILE for p in path.iterdir())
        if busy and not (resume or overwrite):
            raise RunExistsError(
                f"{path} is not empty: pass --resume to finish an interrupted dump, --overwrite "
                "to replace it, or pick another --out_dir"
            )
        if busy and overwrite and not (path / MANIFEST).is_file():
            raise RunExistsError(
                f"{path} is not empty and is not a run folder; refusing to delete its files: "
                "pick an empty or new --out_dir"
            )

    # -- writing ---------------------------------------------------------------------------
    def shard_done(self, index: int) -> bool:
        return _shard_is_whole(self.run_dir, self.manifest["shards"][index])

    def write_shard(self, index: int, tensors: dict[str, Any]) -> None:
        """Write shard ``index`` from ``{"layer_<l>": torch.Tensor [n_tokens, d_mlp]}``."""
        entry = self.manifest["shards"][index]
        path = self.run_dir / ACTIVATIONS_DIR / entry["file"]
        entry["bytes"], entry["sha256"] = atomic_write_chunks(path, safetensors_chunks(tensors))
        # An fsynced append, not a manifest rewrite: O(1) per shard however many prompts.
        line = json.dumps({"shard": index, "bytes": entry["bytes"], "sha256": entry["sha256"]})
        with open(self.run_dir / ACTIVATIONS_DIR / PROGRESS_FILE, "a", encoding="utf-8") as f:
            f.write(line + "\n")
            f.flush()
            os.fsync(f.fileno())

    def finish(self, **extra: Any) -> None:
        missing = [s["file"] for s in self.manifest["shards"] if not s.get("sha256")]
        if missing:
            raise RunFormatError(f"cannot finish {self.run_dir}: shards not written: {missing[:3]}")
        self.manifest.update(extra)
        self.manifest["complete"] = True
        self.manifest["status"] = "complete"
        self.manifest["completed_at_utc"] = utc_now()
        self._save_manifest()
        (self.run_dir / ACTIVATIONS_DIR / PROGRESS_FILE).unlink(missing_ok=True)

    def _save_manifest(self) -> None:
        atomic_write_json(self.run_dir / MANIFEST, self.manifest)

    def close(self) -> None:
        if self._lock_fd >= 0:
            fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
            os.close(self._lock_fd)
            self._lock_fd = -1

    def __enter__(self) -> RunWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _shard_is_whole(run_dir: Path, entry: dict[str, Any]) -> bool:
    """A shard counts as written when the manifest has its hash and the file has its size."""
    if not entry.get("sha256"):
        return False
    f = run_dir / ACTIVATIONS_DIR / entry["file"]
    return f.is_file() and f.stat().st_size == entry.get("bytes")


_ST_DTYPES = {"torch.float32": "F32", "torch.float16": "F16", "torch.bfloat16": "BF16"}


def safetensors_chunks(tensors: dict[str, Any]) -> list[bytes | memoryview]:
    """A safetensors file as pieces: size, JSON header (space-padded to 8 bytes), raw tensors.

    Tensors are laid out in name order with one metadata key, so the same tensors always give the
    same bytes (a resumed run is byte-identical); the raw data is never copied into one buffer.
    """
    import torch

    header: dict[str, Any] = {"__metadata__": {"format": "pt"}}
    bufs: list[bytes | memoryview] = []
    offset = 0
    for name in sorted(tensors):
        t = tensors[name].detach().cpu().contiguous()
        raw = t.reshape(-1).view(torch.uint8).numpy()
        header[name] = {
            "dtype": _ST_DTYPES[str(t.dtype)],
            "shape": list(t.shape),
            "data_offsets": [offset, offset + raw.nbytes],
        }
        offset += raw.nbytes
        bufs.append(memoryview(raw))
    head = json.dumps(header, separators=(",", ":")).encode()
    head += b" " * (-len(head) % 8)
    return [struct.pack("<Q", len(head)), head, *bufs]


def _read_progress(run_dir: Path) -> list[tuple[int, int, str]]:
    """``(shard, bytes, sha256)`` for every whole line of the progress log (a torn last line from
    a kill is ignored)."""
    path = run_dir / ACTIVATIONS_DIR / PROGRESS_FILE
    if not path.is_file():
        return []
    out = []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            d = json.loads(line)
            out.append((int(d["shard"]), int(d["bytes"]), str(d["sha256"])))
        except (ValueError, KeyError, TypeError):
            continue
    return out


def _take_lock(path: Path) -> int:
    fd = os.open(path / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise RunLockedError(
            f"another dump is writing {path}: wait for it to finish or pick another --out_dir"
        ) from None
    os.ftruncate(fd, 0)
    os.write(fd, str(os.getpid()).encode())
    return fd
