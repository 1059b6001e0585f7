"""The run manifest: constants, atomic JSON writes and the dtype names shared by every part."""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from ..errors import RunFormatError

FORMAT_VERSION = 2  # 1 = the prototype (manifest + activations.pt); 2 = safetensors shards
MANIFEST = "manifest.json"
ACTIVATIONS_DIR = "activations"
LEGACY_FILE = "activations.pt"
HOOK_TEMPLATE = "blocks.{l}.mlp.hook_post"
DTYPES = ("bf16", "fp16", "fp32")
TORCH_DTYPE_NAMES = {"bf16": "torch.bfloat16", "fp16": "torch.float16", "fp32": "torch.float32"}
DTYPE_BYTES = {"bf16": 2, "fp16": 2, "fp32": 4}


def utc_now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write to a temporary file in the same folder, fsync, then rename over ``path``."""
    atomic_write_chunks(path, [data])


def atomic_write_chunks(path: Path, chunks: Iterable[bytes | memoryview]) -> tuple[int, str]:
    """Like :func:`atomic_write_bytes` for data in pieces; returns ``(size, sha256 hex)``.

    The pieces go straight from their buffers to the file (no joined copy) and are hashed on the
    way, so a shard is read from memory once.
    """
    digest, size = hashlib.sha256(), 0
    with atomic_open(path, "wb") as f:
        for chunk in chunks:
            f.write(chunk)
            digest.update(chunk)
            size += len(memoryview(chunk).cast("B"))
    return size, digest.hexdigest()


def _file_mode() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


FILE_MODE = _file_mode()  # read once, at import (os.umask is process-wide)


@contextmanager
def atomic_open(path: Path, mode: str = "wb") -> Iterator[IO[Any]]:
    """A file to write ``path`` through: a temporary name in the same folder, fsynced and renamed
    over ``path`` when the block ends, removed if it raises (``mode``: ``wb`` or ``w``, UTF-8)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, FILE_MODE)  # mkstemp makes 0600: give the mode open() would (umask)
        encoding = None if "b" in mode else "utf-8"
        with os.fdopen(fd, mode, encoding=encoding) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file, read in 4 MiB pieces."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 22), b""):
            h.update(chunk)
    return h.hexdigest()


def atomic_write_json(path: Path, obj: Any) -> None:
    atomic_write_bytes(path, (json.dumps(obj, indent=1, ensure_ascii=False) + "\n").encode())


def read_manifest(run_dir: Path) -> dict[str, Any]:
    """Load ``manifest.json`` or raise :class:`RunFormatError` naming the problem."""
    path = run_dir / MANIFEST
    if run_dir.is_file():
        raise RunFormatError(
            f"{run_dir} is a file, not a run folder: pass the folder that holds manifest.json "
            f"and activations/ (e.g. {run_dir.parent})"
        )
    if not run_dir.is_dir():
        raise RunFormatError(f"run folder {run_dir} does not exist: check the path")
    if not path.is_file():
        raise RunFormatError(
            f"{run_dir} has no manifest.json: it is not a run folder (make one with "
            "`neuron-signatures dump`)"
        )
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise RunFormatError(f"{path} is unreadable ({e}); restore it from a copy") from None
    if not isinstance(manifest, dict) or not isinstance(manifest.get("prompts"), list):
        raise RunFormatError(f"{path} has no prompts list: it is not a neuron-signatures manifest")
    version = manifest.get("format_version", 1)
    if version not in (1, FORMAT_VERSION):
        raise RunFormatError(
            f"{path} has format_version {version}; this neuron-signatures reads 1 and "
            f"{FORMAT_VERSION}: upgrade the package"
        )
    return manifest
