"""The run manifest: constants, reading it, and the dtype names shared by every part (its
atomic writes live in :mod:`.atomic`)."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

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


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file, read in 4 MiB pieces."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 22), b""):
            h.update(chunk)
    return h.hexdigest()


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
