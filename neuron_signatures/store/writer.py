"""Write a run folder: lock, manifest, shards written atomically, resume and completion.

1. ``RunClaim.take`` (:mod:`.claim`, which makes the writer) checks the folder can be used and
   takes its lock *before* a model loads; on ``--resume`` it removes temporary files a kill left
   and reads the old manifest, so :meth:`RunClaim.check` can refuse other settings (naming the
   one that differs) and report a finished, intact run as complete without loading anything.
2. :meth:`RunClaim.start` writes the manifest with every prompt's shard and offset already
   planned, and ``complete: false``; a resume keeps every shard whose file matches its recorded
   size and sha256 (recorded in the manifest of a finished run, in the progress log of an
   interrupted one) and rewrites the log with only those, so a torn last line is dropped.
3. Each ``write_shard`` takes one batch (one ``layer_<l>`` tensor per captured layer, already laid
   out as the file by the capture: :mod:`.shard_image`), hashes the bytes, writes them under a
   temporary name (``O_DIRECT`` where the file system allows), fsyncs and renames; then it
   appends the shard's size and sha256 to ``activations/progress.jsonl`` (fsynced). A kill at any
   point leaves every logged shard whole; ``--resume`` keeps those and rewrites the rest.
4. ``finish`` records every shard's size and hash in the manifest, marks it complete and removes
   the log. Readers refuse incomplete runs.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..errors import RunFormatError
from .atomic import atomic_write_chunks, atomic_write_image, atomic_write_json
from .manifest import ACTIVATIONS_DIR, MANIFEST, utc_now
from .progress import PROGRESS_FILE, append_progress
from .shard_image import ST_DTYPES, ShardImage, safetensors_header


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

    def write_shard(self, index: int, tensors: dict[str, Any] | ShardImage) -> None:
        """Write shard ``index`` from ``{"layer_<l>": torch.Tensor [n_tokens, d_mlp]}``, or from
        a :class:`.shard_image.ShardImage` of them (written with ``O_DIRECT``)."""
        entry = self.manifest["shards"][index]
        path = self.run_dir / ACTIVATIONS_DIR / entry["file"]
        if isinstance(tensors, ShardImage):
            entry["bytes"], entry["sha256"] = atomic_write_image(path, tensors)
        else:
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


def safetensors_chunks(tensors: dict[str, Any]) -> list[bytes | memoryview]:
    """A safetensors file as pieces: the header of :func:`.shard_image.safetensors_header`, then
    the raw tensors in name order (the same bytes as a :class:`.shard_image.ShardImage` of the
    same tensors); the raw data is never copied into one buffer."""
    import torch

    flat = {n: tensors[n].detach().cpu().contiguous() for n in sorted(tensors)}
    specs = {n: (ST_DTYPES[str(t.dtype)], list(t.shape)) for n, t in flat.items()}
    prefix, _ = safetensors_header(specs)
    return [prefix, *(memoryview(t.reshape(-1).view(torch.uint8).numpy()) for t in flat.values())]
