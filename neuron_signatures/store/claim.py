"""Claim a run folder for a dump: check it, lock it and inspect what a resume would keep.

The claim is taken before the model loads, so a locked folder, a folder that is not a run or a
resume with other settings fails in a second instead of after the load. See :mod:`.writer` for
what happens once the manifest is known.
"""

from __future__ import annotations

import fcntl
import os
import shutil
from pathlib import Path
from typing import Any

from ..errors import RunExistsError, RunLockedError
from .manifest import ACTIVATIONS_DIR, LEGACY_FILE, MANIFEST, read_manifest, sha256_file, utc_now
from .progress import read_progress, remove_leftover_temps, rewrite_progress
from .resume import settings_mismatch
from .writable import check_writable
from .writer import RunWriter

LOCK_FILE = ".lock"
_RUN_FILES = {MANIFEST, ACTIVATIONS_DIR, LEGACY_FILE, LOCK_FILE, "analysis"}


class RunClaim:
    """A run folder locked for one dump, from before the model loads until the writer closes.

    Use :meth:`take`, then :meth:`check` with what is known before the load, then :meth:`start`
    with the full manifest. A context manager: leaving it releases the lock and removes a folder
    it created when nothing was written.
    """

    def __init__(self, path: Path, lock_fd: int, *, resume: bool, overwrite: bool, created: bool):
        self.path = path
        self.resume = resume
        self.overwrite = overwrite
        self.old: dict[str, Any] | None = None
        self.notes: list[str] = []
        self._lock_fd = lock_fd
        self._created = created
        self._kept: dict[int, tuple[int, str]] | None = None

    @classmethod
    def take(
        cls, run_dir: str | Path, *, resume: bool = False, overwrite: bool = False
    ) -> RunClaim:
        """Check ``run_dir`` can be written with these flags and lock it.

        Raises:
            RunExistsError: the folder holds files and the flags do not allow using them.
            OutputNotWritableError: the folder cannot be made or written.
            RunLockedError: another dump holds the lock.
        """
        path = Path(run_dir)
        check_target(path, resume=resume, overwrite=overwrite)
        check_writable(path)
        created = not path.exists()
        path.mkdir(parents=True, exist_ok=True)
        try:
            lock_fd = _take_lock(path)
        except BaseException:
            if created:
                _remove_if_empty(path)
            raise
        claim = cls(path, lock_fd, resume=resume, overwrite=overwrite, created=created)
        try:
            if resume and (path / MANIFEST).is_file():
                claim._inspect()
        except BaseException:
            claim.release()
            raise
        return claim

    def _inspect(self) -> None:
        self.old = read_manifest(self.path)
        if int(self.old.get("format_version", 1)) == 1 or "shards" not in self.old:
            raise RunExistsError(
                f"{self.path} is a prototype run (activations.pt), which cannot be resumed: "
                "use --overwrite or another --out_dir"
            )
        gone = remove_leftover_temps(self.path)
        if gone:
            from ..estimate import human_bytes

            self.notes.append(
                f"removed {len(gone)} temporary files a killed dump left "
                f"({human_bytes(sum(size for _, size in gone))})"
            )

    @property
    def complete(self) -> bool:
        """Whether the folder holds a run marked complete (to be resumed)."""
        return bool(self.old and self.old.get("complete"))

    def kept_shards(self) -> dict[int, tuple[int, str]]:
        """``{shard: (bytes, sha256)}`` of the old run's shards a resume keeps."""
        if self._kept is None:
            self._kept = self._find_kept()
        return self._kept

    def _find_kept(self) -> dict[int, tuple[int, str]]:
        """Shards whose size and sha256 match what was recorded: in the manifest of a finished
        run, in the progress log of an interrupted one."""
        if self.old is None:
            return {}
        shards = self.old["shards"]
        if self.complete:
            recorded = {
                i: (int(s["bytes"]), str(s["sha256"]))
                for i, s in enumerate(shards)
                if s.get("sha256") and s.get("bytes") is not None
            }
        else:
            recorded = {i: v for i, v in read_progress(self.path).items() if 0 <= i < len(shards)}
        return {i: v for i, v in recorded.items() if _matches(self.path, shards[i], *v)}

    def check(self, preview: dict[str, Any]) -> bool:
        """Refuse a resume whose settings differ from the run's (those ``preview`` holds).

        Returns:
            True when the run is already complete and every shard matches its recorded sha256:
            there is nothing to do. A finished run with bad shards is resumed for those only.

        Raises:
            RunExistsError: naming the first setting that differs and its two values.
        """
        if self.old is None:
            return False
        self._refuse_mismatch(preview, environment=False)
        if self.complete:
            kept = self.kept_shards()
            bad = [s["file"] for i, s in enumerate(self.old["shards"]) if i not in kept]
            if not bad:
                return True
            self.notes.append(
                f"{len(bad)} shards of the finished run fail their size or sha256 check "
                f"({', '.join(bad[:3])}{', ...' if len(bad) > 3 else ''}): recomputing only those"
            )
        self._refuse_mismatch(preview, environment=True)
        return False

    def _refuse_mismatch(self, manifest: dict[str, Any], *, environment: bool) -> None:
        assert self.old is not None
        diff = settings_mismatch(self.old, manifest, environment=environment)
        if diff:
            raise RunExistsError(
                f"cannot resume {self.path}: {diff}; resume with the settings and environment "
                "that started it, or start again with --overwrite or another --out_dir"
            )

    def start(self, manifest: dict[str, Any]) -> RunWriter:
        """Write ``manifest`` (which plans every shard) and return the writer that fills it."""
        if self.old is not None:
            self._refuse_mismatch(manifest, environment=True)
            manifest = self._merge(manifest)
            rewrite_progress(self.path, self.kept_shards())
        elif self.overwrite:
            for p in self.path.iterdir():
                if p.name != LOCK_FILE and (
                    p.name in _RUN_FILES or p.name.startswith(f".{MANIFEST}.")
                ):
                    shutil.rmtree(p) if p.is_dir() else p.unlink()
        writer = RunWriter(self.path, manifest, self.release)
        writer._save_manifest()
        return writer

    def _merge(self, manifest: dict[str, Any]) -> dict[str, Any]:
        """The new manifest with the old creation time and the shards the resume keeps."""
        assert self.old is not None
        merged = dict(manifest)
        merged["created_at_utc"] = self.old.get("created_at_utc", manifest.get("created_at_utc"))
        merged["shards"] = [dict(s) for s in manifest["shards"]]
        for index, (size, digest) in self.kept_shards().items():
            if index < len(merged["shards"]):
                merged["shards"][index].update(bytes=size, sha256=digest)
        merged["resumed_at_utc"] = utc_now()
        return merged

    def release(self) -> None:
        if self._lock_fd >= 0:
            if self._created:
                _remove_if_empty(self.path)
            fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
            os.close(self._lock_fd)
            self._lock_fd = -1

    def __enter__(self) -> RunClaim:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def open_writer(
    run_dir: str | Path,
    manifest: dict[str, Any],
    *,
    resume: bool = False,
    overwrite: bool = False,
) -> RunWriter:
    """Claim, check and start in one step (when no model load sits in between).

    Raises:
        RunExistsError: the folder holds files and neither flag allows using it, or a resume
            whose settings differ.
        RunLockedError: another dump holds the lock.
    """
    claim = RunClaim.take(run_dir, resume=resume, overwrite=overwrite)
    try:
        claim.check(manifest)
        return claim.start(manifest)
    except BaseException:
        claim.release()
        raise


def check_target(path: Path, *, resume: bool, overwrite: bool) -> None:
    """Fail early (before loading a model) when ``path`` cannot be written with these flags."""
    if path.exists() and not path.is_dir():
        raise RunExistsError(f"{path} is a file, not a folder: pick another --out_dir")
    if not path.is_dir() or not any(p.name != LOCK_FILE for p in path.iterdir()):
        return
    if not (path / MANIFEST).is_file():
        raise RunExistsError(
            f"{path} is not empty and is not a run folder (no manifest.json); nothing in it is "
            "touched: pick an empty or new --out_dir"
        )
    if not (resume or overwrite):
        raise RunExistsError(
            f"{path} already holds a run: pass --resume to finish it, --overwrite to replace "
            "it, or pick another --out_dir"
        )


def _matches(run_dir: Path, entry: dict[str, Any], size: int, digest: str) -> bool:
    """Whether a shard's file has ``size`` bytes and the sha256 ``digest``."""
    f = run_dir / ACTIVATIONS_DIR / entry["file"]
    return f.is_file() and f.stat().st_size == size and sha256_file(f) == digest


def _remove_if_empty(path: Path) -> None:
    """Remove a folder this dump created when it holds nothing but the lock file."""
    try:
        if all(p.name == LOCK_FILE for p in path.iterdir()):
            (path / LOCK_FILE).unlink(missing_ok=True)
            path.rmdir()
    except OSError:
        pass


def _take_lock(path: Path) -> int:
    return take_folder_lock(path / LOCK_FILE, f"another dump{{pid}} is writing {path}")


def take_folder_lock(
    lock_file: Path, busy: str, fix: str = "wait for it to finish or pick another --out_dir"
) -> int:
    """An exclusive ``flock`` on ``lock_file`` holding our pid; its fd (release with ``flock
    LOCK_UN`` + close). ``busy`` (with a ``{pid}`` slot) says who holds it when it is taken,
    ``fix`` what to do then."""
    fd = os.open(lock_file, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 32, 0).decode(errors="replace").strip()
        os.close(fd)
        pid = f" (pid {holder})" if holder.isdigit() else ""
        raise RunLockedError(busy.replace("{pid}", pid) + f": {fix}") from None
    os.ftruncate(fd, 0)
    os.write(fd, str(os.getpid()).encode())
    return fd
