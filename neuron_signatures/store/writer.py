"""Write a run folder: lock, manifest, shards written atomically, resume and completion.

1. ``RunClaim.take`` (:mod:`.claim`, which makes the writer) checks the folder can be used and
   takes its lock *before* a model loads; on ``--resume`` it removes temporary files a kill left
   and reads the old manifest, so :meth:`RunClaim.check` can refuse other settings (naming the
   one that differs) and report a finished, intact run as complete without loading anything.
2. :meth:`RunClaim.start` writes the manifest with every prompt's shard and offset already
   planned, and ``complete: false``; a resume keeps every shard whose file matches its recorded
   size and sha256 (recorded in the manifest of a finished run, in the progress log of an
   interrupted one) and rewrites the log with only those, so a torn last line is dropped.
3. Each ``write_shard`` serialises one batch (one ``layer_<l>`` tensor per captured layer), hashes
   the bytes, writes them under a temporary name, fsyncs and renames; then it appends the shard's
   size and sha256 to ``activations/progress.jsonl`` (fsynced). A kill at any point leaves every
   logged shard whole; ``--resume`` keeps those and rewrites the rest.
4. ``finish`` records every shard's size and hash in the manifest, marks it complete and removes
   the log. Readers refuse incomplete runs.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..errors import RunFormatError
from .atomic import atomic_write_chunks, atomic_write_json
from .manifest import ACTIVATIONS_DIR, MANIFEST, utc_now
from .progress import PROGRESS_FILE, append_progress


def shard_name(index: int) -> str:
    return f"shard_{index:05d}.safetensors"


class RunWriter:
    """Owns a run folder while a dump writes it. Use as a context manager.

    Made by :meth:`RunClaim.start <.claim.RunClaim.start>` (or :func:`.claim.open_writer`), which
    passes ``release``: closing the writer releases the claim's lock.
    """

    def __init__(
        self, run_dir: Path, manifest: dict[str, Any], release: Callable[[], None]
    ) -> None:
        self.run_dir = run_dir
        self.manifest = manifest
        self._release = release

    # -- writing ---------------------------------------------------------------------------
    def shard_done(self, index: int) -> bool:
        return _shard_is_whole(self.run_dir, self.manifest["shards"][index])

    def write_shard(self, index: int, tensors: dict[str, Any]) -> None:
        """Write shard ``index`` from ``{"layer_<l>": torch.Tensor [n_tokens, d_mlp]}``."""
        entry = self.manifest["shards"][index]
        path = self.run_dir / ACTIVATIONS_DIR / entry["file"]
        entry["bytes"], entry["sha256"] = atomic_write_chunks(path, safetensors_chunks(tensors))
        # An fsynced append, not a manifest rewrite: O(1) per shard however many prompts.
        append_progress(self.run_dir, index, entry["bytes"], entry["sha256"])

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
        self._release()

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
