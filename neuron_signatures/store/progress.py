"""What an interrupted dump leaves behind: the progress log and temporary files.

The log ``activations/progress.jsonl`` holds one fsynced line ``{"shard", "bytes", "sha256"}`` per
shard written since the manifest was last saved; a kill can tear its last line. Temporary files
(``.<name>.<random>.tmp``) are what a kill leaves in the middle of an atomic write.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from .atomic import atomic_write_bytes
from .manifest import ACTIVATIONS_DIR, LEGACY_FILE, MANIFEST

PROGRESS_FILE = "progress.jsonl"
_TMP_PREFIXES = (f".{MANIFEST}.", f".{LEGACY_FILE}.", ".shard_", f".{PROGRESS_FILE}.")


def progress_path(run_dir: Path) -> Path:
    return run_dir / ACTIVATIONS_DIR / PROGRESS_FILE


def read_progress(run_dir: Path) -> dict[int, tuple[int, str]]:
    """``{shard: (bytes, sha256)}`` for every whole line of the log (a torn line is ignored)."""
    path = progress_path(run_dir)
    if not path.is_file():
        return {}
    out: dict[int, tuple[int, str]] = {}
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            d = json.loads(line)
            out[int(d["shard"])] = (int(d["bytes"]), str(d["sha256"]))
        except (ValueError, KeyError, TypeError):
            continue
    return out


def rewrite_progress(run_dir: Path, kept: dict[int, tuple[int, str]]) -> None:
    """Replace the log (atomically) by one whole line per kept shard.

    Called when a dump resumes: a torn last line from a kill is dropped instead of being glued to
    the next entry, and shards kept from a finished run (whose log was removed) are logged again,
    so a second interruption keeps them too.
    """
    lines = "".join(_line(i, size, digest) for i, (size, digest) in sorted(kept.items()))
    atomic_write_bytes(progress_path(run_dir), lines.encode())


def append_progress(run_dir: Path, index: int, size: int, digest: str) -> None:
    """Append one shard's entry and fsync (O(1) per shard, whatever the number of prompts)."""
    with open(progress_path(run_dir), "a", encoding="utf-8") as f:
        f.write(_line(index, size, digest))
        f.flush()
        os.fsync(f.fileno())


def _line(index: int, size: int, digest: str) -> str:
    return json.dumps({"shard": index, "bytes": size, "sha256": digest}) + "\n"


def leftover_temps(run_dir: Path) -> list[tuple[Path, int]]:
    """Temporary files a killed dump left in ``run_dir`` and its ``activations/``, with sizes."""
    out = []
    for folder in (run_dir, run_dir / ACTIVATIONS_DIR):
        if not folder.is_dir():
            continue
        for p in sorted(folder.iterdir()):
            if p.name.endswith(".tmp") and p.name.startswith(_TMP_PREFIXES) and p.is_file():
                out.append((p, p.stat().st_size))
    return out


def remove_leftover_temps(run_dir: Path) -> list[tuple[Path, int]]:
    """Delete :func:`leftover_temps` (only while holding the run's lock); returns what went."""
    gone = leftover_temps(run_dir)
    for p, _ in gone:
        p.unlink(missing_ok=True)
    return gone
