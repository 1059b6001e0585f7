"""The output folder of the folder formats (``neuronpedia``, ``neuron_record``): check it, write
the export beside the previous one, and swap it in whole.

An export with ``--overwrite`` must not leave the previous export's other neurons or layers in
place (the folder would mix two exports), and must not delete anything it did not write.

1. :func:`foreign_entry` recognises what an export of the format writes, by its layout:
   ``neuron_record``: ``neuron_records.json`` and ``<layer>/<neuron>.json``; ``neuronpedia``:
   ``<model_id>/<layer>/{model,sourceset,source}.jsonl`` and ``{features,activations}/batch-<N>
   .jsonl.gz``; both: hidden leftovers of an interrupted write. A folder holding anything else
   is refused before anything loads, whatever ``--overwrite`` says.
2. :func:`swap_in` writes the new export into a hidden folder inside the target
   (``.export.partial-<pid>``); a failure removes it and leaves the previous export untouched.
3. On success, every top-level entry of the previous export moves into ``.export.old-<pid>``,
   the new entries move up into place (renames only), and the old ones are deleted.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ..errors import BadArgumentError, RunExistsError
from .explanation_rows import SCORES_FILE
from .explanations_openai import INFO_FILE as OPENAI_INFO
from .neuron_record import INFO_FILE

NP_EXPLANATION_FILES = ("explanation_type.jsonl", "explanation_model_type.jsonl", SCORES_FILE)

PARTIAL, OLD = ".export.partial-", ".export.old-"
NP_METADATA = frozenset({"model.jsonl", "sourceset.jsonl", "source.jsonl", *NP_EXPLANATION_FILES})
NP_BATCH_DIRS = frozenset({"features", "activations", "explanations"})
OPENAI_EXPLANATIONS = "explanations_openai"  # {layer}/{neuron}.jsonl, INFO and SCORES files
_INT = re.compile(r"^(0|[1-9]\d*)$")
_BATCH = re.compile(r"^batch-\d+\.jsonl\.gz$")
_MODEL_ID = re.compile(r"^[a-z0-9_-]+$")
_LEFTOVER = re.compile(rf"^({re.escape(PARTIAL)}|{re.escape(OLD)})\d+$")


def _hidden(p: Path) -> bool:
    return p.name.startswith(".")


def _record_layer(p: Path, suffix: str = ".json") -> Path | None:
    """The first entry of a would-be ``<layer>/`` folder that is not ``<neuron><suffix>``."""
    for f in p.iterdir():
        ok = _hidden(f) or (f.is_file() and f.suffix == suffix and _INT.match(f.stem))
        if not ok:
            return f
    return None


def _np_source(p: Path) -> Path | None:
    """The first entry of a would-be Neuronpedia source folder that the export does not write."""
    for f in p.iterdir():
        if _hidden(f) or (f.is_file() and f.name in NP_METADATA):
            continue
        if not (f.is_dir() and f.name in NP_BATCH_DIRS):
            return f
        for b in f.iterdir():
            if not (_hidden(b) or (b.is_file() and _BATCH.match(b.name))):
                return b
    return None


def _np_model(p: Path) -> Path | None:
    for f in p.iterdir():
        if _hidden(f):
            continue
        if not (f.is_dir() and _INT.match(f.name)):
            return f
        bad = _np_source(f)
        if bad is not None:
            return bad
    return None


def foreign_entry(folder: Path, fmt: str) -> Path | None:
    """The first file or folder in ``folder`` that an export of ``fmt`` does not write (None
    when everything there is a previous export's, or its leftovers)."""
    for p in sorted(Path(folder).iterdir()):
        if _hidden(p):
            if _LEFTOVER.match(p.name):
                continue
            return p
        if fmt in ("neuron_record", OPENAI_EXPLANATIONS):
            own = (INFO_FILE,) if fmt == "neuron_record" else (OPENAI_INFO, SCORES_FILE)
            if p.name in own and p.is_file():
                continue
            if p.is_dir() and _INT.match(p.name):
                bad = _record_layer(p, ".json" if fmt == "neuron_record" else ".jsonl")
                if bad is None:
                    continue
                return bad
            return p
        if p.is_dir() and _MODEL_ID.match(p.name):
            bad = _np_model(p)
            if bad is None:
                continue
            return bad
        return p
    return None


def check_out_dir(path: Path, fmt: str, overwrite: bool) -> None:
    """Refuse a file, a non-empty folder without ``--overwrite``, and (with it) a folder that
    holds anything a previous ``fmt`` export did not write.

    Raises:
        BadArgumentError: ``path`` is a file, or holds files that are not an export's.
        RunExistsError: ``path`` is not empty and ``overwrite`` is False.
    """
    if path.exists() and not path.is_dir():
        raise BadArgumentError(f"--out_dir {path} is a file: name a folder")
    if not path.is_dir() or not any(path.iterdir()):
        return
    if not overwrite:
        raise RunExistsError(
            f"{path} is not empty: pass --overwrite to replace the export in it, or another "
            "--out_dir"
        )
    bad = foreign_entry(path, fmt)
    if bad is not None:
        raise BadArgumentError(
            f"--out_dir {path} holds {bad}, which a {fmt} export does not write: --overwrite "
            "replaces a previous export whole and deletes nothing else; move it or give "
            "another --out_dir"
        )


@contextmanager
def swap_in(target: Path) -> Iterator[Path]:
    """Yield a hidden folder inside ``target`` to write the new export into; on success replace
    every top-level entry of ``target`` with that folder's (module docstring, steps 2-3).

    On failure the hidden folder is removed (and ``target`` too when this call made it), and the
    previous export stays as it was.
    """
    made = not target.exists()
    target.mkdir(parents=True, exist_ok=True)
    tmp = target / f"{PARTIAL}{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        if made:
            shutil.rmtree(target, ignore_errors=True)
        raise
    old = target / f"{OLD}{os.getpid()}"
    shutil.rmtree(old, ignore_errors=True)
    old.mkdir()
    for p in target.iterdir():
        if p not in (tmp, old):
            p.rename(old / p.name)
    for p in tmp.iterdir():
        p.rename(target / p.name)
    tmp.rmdir()
    shutil.rmtree(old, ignore_errors=True)
