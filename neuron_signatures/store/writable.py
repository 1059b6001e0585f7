"""The write probe: can an output folder be made and written, asked before anything loads.

``os.access`` answers for the permission bits only (root passes every check) and says nothing of
a path under a regular file or a read-only disk, so the probe does what a writer will do: make
the folder (and its missing parents), create a file in it and remove it. Whatever the probe made
is removed again, so a later early error leaves no empty folder behind.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from ..errors import OutputNotWritableError


def check_writable(folder: Path, flag: str = "--out_dir") -> None:
    """Raise :class:`OutputNotWritableError` (one line naming ``flag`` and the reason) unless a
    file can be written in ``folder``; leaves the file system as it found it."""
    folder = Path(folder)
    made: list[Path] = []  # deepest first
    p = folder
    while not p.exists() and p != p.parent:
        made.append(p)
        p = p.parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".write-probe.", dir=folder)
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise OutputNotWritableError(
            f"cannot write {flag} {folder} ({_reason(e, p)}): pick a folder you can write"
        ) from None
    finally:
        for q in made:
            try:
                q.rmdir()
            except OSError:
                break


def _reason(e: OSError, existing: Path) -> str:
    """Why the probe failed, naming the file in the way when the path runs under a file."""
    if existing.exists() and not existing.is_dir():
        return f"{existing} is a file"
    return e.strerror or str(e)
