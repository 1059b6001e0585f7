"""Units of work and the staging folder of a Ray build (``<atlas>/parts/``).

```
<atlas>/parts/
  static/               windows, documents, vocab and the manifest (``complete: false``)
  units.json            the units: contiguous batch ranges ``[[lo, hi], ...]`` of the plan
  unit_KKKK/            a finished unit: a partial atlas (layers, manifest[, write scores])
  unit_KKKK.tmp-*/      a unit being built (removed on resume: never counted as done)
  prefix_KKKK/          units 0..K-1 merged (the driver folds finished units in, in order)
```

A unit folder only appears under its final name by an atomic rename after its manifest is
written, so a killed worker leaves a ``.tmp-*`` folder that is ignored, and a unit is never
counted twice. :func:`fold` merges a finished unit into the prefix; :func:`finish` moves the
last prefix and the static files into the atlas.
"""

from __future__ import annotations

import itertools
import os
import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from ..atlas import store
from ..atlas.build import _merged_progress
from ..errors import NeuronSignaturesError

PARTS = "parts"
STATIC = "static"
UNITS = "units.json"
_UNIT = re.compile(r"^unit_(\d{4,})$")
_PREFIX = re.compile(r"^prefix_(\d{4,})$")


def unit_dir(parts: Path, k: int) -> Path:
    return parts / f"unit_{k:04d}"


def prefix_dir(parts: Path, k: int) -> Path:
    return parts / f"prefix_{k:04d}"


def split_units(batch_tokens: list[int], n_units: int) -> list[list[int]]:
    """Cut batches into at most ``n_units`` contiguous ranges of about equal tokens."""
    n = len(batch_tokens)
    n_units = max(1, min(n_units, n))
    cum = np.cumsum(np.asarray(batch_tokens, dtype=np.int64))
    targets = cum[-1] * np.arange(1, n_units) / n_units
    cuts = sorted({int(c) + 1 for c in np.searchsorted(cum, targets)} - {0, n})
    bounds = [0, *[c for c in cuts if 0 < c < n], n]
    return [[lo, hi] for lo, hi in itertools.pairwise(bounds)]


def scan(parts: Path) -> tuple[int, set[int]]:
    """``(K, done)``: the largest finished prefix and the finished units at or after it.

    Removes half-written folders (``*.tmp-*``), stale prefixes and units already in the prefix.
    """
    prefixes, units = [], []
    for p in parts.iterdir() if parts.is_dir() else []:
        if ".tmp" in p.name:
            shutil.rmtree(p, ignore_errors=True)
        elif (m := _PREFIX.match(p.name)) and (p / store.MANIFEST).is_file():
            prefixes.append(int(m.group(1)))
        elif (m := _UNIT.match(p.name)) and (p / store.MANIFEST).is_file():
            units.append(int(m.group(1)))
    k = max(prefixes, default=0)
    for old in prefixes:
        if old != k:
            shutil.rmtree(prefix_dir(parts, old))
    for u in units:
        if u < k:
            shutil.rmtree(unit_dir(parts, u))
    return k, {u for u in units if u >= k}


def fold(parts: Path, k: int, p: Any, layers: list[int], n_batches: int) -> None:
    """``prefix_k`` + ``unit_k`` → ``prefix_{k+1}`` (written aside, then renamed into place)."""
    from ..atlas.reduce import from_disk, merge, to_disk

    unit, out = unit_dir(parts, k), prefix_dir(parts, k + 1)
    if k == 0:
        os.rename(unit, out)
        return
    prev = prefix_dir(parts, k)
    tmp = parts / f"{out.name}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    for layer in layers:
        a = from_disk(store.load_tensors(store.layer_file(prev, layer)), p, "cpu")
        b = from_disk(store.load_tensors(store.layer_file(unit, layer)), p, "cpu")
        store.save_tensors(store.layer_file(tmp, layer), to_disk(merge(a, b, p), p))
    if (prev / store.WRITE_SCORES).is_file():
        shutil.copyfile(prev / store.WRITE_SCORES, tmp / store.WRITE_SCORES)
    ma, mb = store.read_manifest(prev), store.read_manifest(unit)
    ranges = sorted(tuple(r) for m in (ma, mb) for r in m["progress"]["batch_ranges"])
    manifest = dict(ma)
    manifest["progress"] = _merged_progress([ma["progress"], mb["progress"]], ranges)
    manifest["complete"] = manifest["progress"]["batch_ranges"] == [[0, n_batches]]
    store.write_json(tmp / store.MANIFEST, manifest)
    os.rename(tmp, out)
    shutil.rmtree(prev)
    shutil.rmtree(unit)


def finish(root: Path, parts: Path, n_units: int) -> None:
    """Move the static files and the last prefix into the atlas; the manifest goes last."""
    last, static = prefix_dir(parts, n_units), parts / STATIC
    if not (last / store.MANIFEST).is_file():
        raise NeuronSignaturesError(f"{last} is missing: re-run with --resume")
    for src in (static / store.WINDOWS, static / store.DOCUMENTS, static / store.VOCAB):
        if src.exists():
            os.replace(src, root / src.name)
    if (last / store.LAYERS).is_dir():
        shutil.rmtree(root / store.LAYERS, ignore_errors=True)
        os.replace(last / store.LAYERS, root / store.LAYERS)
    if (last / store.WRITE_SCORES).is_file():
        os.replace(last / store.WRITE_SCORES, root / store.WRITE_SCORES)
    os.replace(last / store.MANIFEST, root / store.MANIFEST)
    shutil.rmtree(parts)
