"""Units of work and the staging folder of a Ray build (``<atlas>/parts/``).

```
<atlas>/parts/
  static/               windows, documents, vocab and the manifest (``complete: false``)
  units.json            the units: contiguous batch ranges ``[[lo, hi], ...]`` of the plan
  unit_KKKK/            a finished unit: a partial atlas (layers, manifest[, write scores])
  span_AAAA_BBBB/       units A..B-1 merged (a tree of merges run on the workers)
  *.tmp-*/              a unit or a merge being written (removed on resume: never counted)
```

A folder only appears under its final name by an atomic rename after its manifest is written, so
a killed worker leaves a ``.tmp-*`` folder that is ignored, and nothing is counted twice. Every
merge joins two adjacent finished spans into their union (:func:`merge_spans`), so the finished
spans are always disjoint or nested; a nested one is a leftover of a merge interrupted after its
rename and is removed by :func:`scan`. The exact merge is associative: any tree of merges gives
the bytes of one process. :func:`finish` moves the span of all units into the atlas.
"""

from __future__ import annotations

import itertools
import os
import re
import shutil
import uuid
from collections.abc import Callable
from pathlib import Path

import numpy as np

from ..atlas import store
from ..atlas.build import write_merged
from ..errors import NeuronSignaturesError

PARTS = "parts"
STATIC = "static"
UNITS = "units.json"
_UNIT = re.compile(r"^unit_(\d{4,})$")
_SPAN = re.compile(r"^span_(\d{4,})_(\d{4,})$")


def unit_dir(parts: Path, k: int) -> Path:
    return parts / f"unit_{k:04d}"


def span_dir(parts: Path, a: int, b: int) -> Path:
    """The folder of units ``a..b-1`` merged (a unit's own folder when ``b == a + 1``)."""
    return unit_dir(parts, a) if b == a + 1 else parts / f"span_{a:04d}_{b:04d}"


def split_units(batch_tokens: list[int], n_units: int) -> list[list[int]]:
    """Cut batches into at most ``n_units`` contiguous ranges of about equal tokens."""
    n = len(batch_tokens)
    n_units = max(1, min(n_units, n))
    cum = np.cumsum(np.asarray(batch_tokens, dtype=np.int64))
    targets = cum[-1] * np.arange(1, n_units) / n_units
    cuts = sorted({int(c) + 1 for c in np.searchsorted(cum, targets)} - {0, n})
    bounds = [0, *[c for c in cuts if 0 < c < n], n]
    return [[lo, hi] for lo, hi in itertools.pairwise(bounds)]


def scan(parts: Path) -> list[tuple[int, int]]:
    """The finished spans ``[(a, b), ...]`` (sorted, disjoint): half-written folders and spans
    inside a larger finished one (a merge stopped after its rename) are removed."""
    spans = []
    for p in parts.iterdir() if parts.is_dir() else []:
        if ".tmp" in p.name:
            shutil.rmtree(p, ignore_errors=True)
        elif (m := _SPAN.match(p.name)) and (p / store.MANIFEST).is_file():
            spans.append((int(m.group(1)), int(m.group(2))))
        elif (m := _UNIT.match(p.name)) and (p / store.MANIFEST).is_file():
            spans.append((int(m.group(1)), int(m.group(1)) + 1))
    spans.sort(key=lambda s: (s[0], -s[1]))
    kept: list[tuple[int, int]] = []
    for a, b in spans:
        if kept and b <= kept[-1][1]:
            shutil.rmtree(span_dir(parts, a, b))
        else:
            kept.append((a, b))
    return kept


def pair_adjacent(spans: list[tuple[int, int]]) -> list[tuple[int, int, int]]:
    """Merges ``(a, b, c)`` of adjacent spans ``[a, b)`` + ``[b, c)``, each span used once."""
    out, i = [], 0
    while i + 1 < len(spans):
        (a, b), (b2, c) = spans[i], spans[i + 1]
        if b == b2:
            out.append((a, b, c))
            i += 2
        else:
            i += 1
    return out


def merge_spans(
    parts: Path,
    a: int,
    b: int,
    c: int,
    before_rename: Callable[[int, int, int], None] | None = None,
) -> None:
    """``span [a, b)`` + ``span [b, c)`` → ``span [a, c)`` (written aside, renamed into place,
    then the inputs removed); a retry after the rename only removes the inputs."""
    left, right, out = span_dir(parts, a, b), span_dir(parts, b, c), span_dir(parts, a, c)
    if not (out / store.MANIFEST).is_file():
        tmp = parts / f"{out.name}.tmp-{uuid.uuid4().hex[:8]}"
        tmp.mkdir()
        write_merged([left, right], [store.read_manifest(left), store.read_manifest(right)], tmp)
        if before_rename:
            before_rename(a, b, c)
        os.rename(tmp, out)
    shutil.rmtree(left, ignore_errors=True)
    shutil.rmtree(right, ignore_errors=True)


def finish(root: Path, parts: Path, n_units: int) -> None:
    """Move the static files and the last prefix into the atlas; the manifest goes last."""
    last, static = span_dir(parts, 0, n_units), parts / STATIC
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
