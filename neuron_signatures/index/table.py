"""The neuron table of an atlas: one SQLite file, ``<atlas>/index.sqlite``, built on demand.

Method:

1. One row per (layer, neuron, side): the atlas statistics of the neuron (read a layer at a time
   with :meth:`Atlas.layer_stats`) and, where ``<atlas>/explanations/`` explains the neuron, one
   row per explained side (positive, negative) with its explanation, scores and floors
   (:func:`neuron_signatures.explain.output.read_explanations`). A neuron without explanation
   has one row whose side is NULL.
2. An FTS5 table (external content: it indexes ``neurons.explanation`` without a copy) answers
   text queries; B-tree indexes serve the filters and sorts.
3. ``meta`` holds the schema version and the key of what the table was built from: sha256 of
   ``atlas.json`` and of ``explanations/explanations.json`` plus the size and mtime of each
   explanation layer file (a resumed explain run adds layers without touching its manifest).
   When the key or the schema differs, the table is rebuilt.
4. The file is written under a temporary name in the atlas folder and renamed into place, so a
   reader never sees half a table and two builders never corrupt each other.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import sqlite3
import tempfile
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import OutputNotWritableError, RunFormatError

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1
INDEX_FILE = "index.sqlite"
EXPLANATIONS = "explanations"
EXPLANATIONS_MANIFEST = "explanations.json"

# (name, SQL type) of every column of ``neurons`` after ``id``, in insert order
COLUMNS: tuple[tuple[str, str], ...] = (
    ("layer", "INTEGER NOT NULL"),
    ("neuron", "INTEGER NOT NULL"),
    ("side", "TEXT"),  # "positive" | "negative" | NULL (no explanation)
    ("count", "INTEGER"),  # tokens the atlas statistics cover
    ("mean", "REAL"),
    ("std", "REAL"),
    ("min", "REAL"),
    ("max", "REAL"),
    ("density", "REAL"),  # share of tokens with a positive activation
    ("frac_above_threshold", "REAL"),
    ("explainer", "TEXT"),
    ("explanation", "TEXT"),
    ("score", "REAL"),  # top-and-random correlation (OpenAI's headline score)
    ("score_random_only", "REAL"),
    ("floor", "REAL"),  # the same scorer with another neuron's explanation
    ("floor_random_only", "REAL"),
    ("floor_from", "INTEGER"),
    ("heldout_tokens", "INTEGER"),  # tokens of the top-and-random held-out set
)
NAMES = tuple(c for c, _ in COLUMNS)
STAT_KEYS = ("mean", "std", "min", "max", "density", "frac_above_threshold")

SCHEMA = f"""
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE neurons (id INTEGER PRIMARY KEY, {", ".join(f"{n} {t}" for n, t in COLUMNS)});
CREATE VIRTUAL TABLE neurons_fts USING fts5(
    explanation, content='neurons', content_rowid='id', tokenize='unicode61'
);
"""
INDEXES = """
CREATE INDEX neurons_layer ON neurons (layer, neuron);
CREATE INDEX neurons_score ON neurons (score);
CREATE INDEX neurons_density ON neurons (density);
CREATE INDEX neurons_max ON neurons (max);
"""


@dataclass(frozen=True)
class IndexInfo:
    """What an index file was built from (its ``meta`` table)."""

    path: Path
    schema_version: int
    key: str
    has_explanations: bool
    layers: list[int]
    explained_layers: list[int]
    rows: int


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def source_key(atlas_root: Path) -> str:
    """The key of what the table is built from (step 3 of the method)."""
    parts: list[Any] = [SCHEMA_VERSION, _sha256(atlas_root / "atlas.json")]
    exp = atlas_root / EXPLANATIONS
    if (exp / EXPLANATIONS_MANIFEST).is_file():
        parts.append(_sha256(exp / EXPLANATIONS_MANIFEST))
        for p in sorted((exp / "layers").glob("layer_*.jsonl")):
            st = p.stat()
            parts.append([p.name, st.st_size, st.st_mtime_ns])
    return hashlib.sha256(json.dumps(parts).encode()).hexdigest()


def side_values(rec: dict[str, Any] | None) -> list[tuple[Any, ...]]:
    """The explanation columns of one neuron record (``side`` .. ``heldout_tokens``), one tuple
    per side; one tuple of NULLs for a neuron without explanation."""
    sides = (rec or {}).get("sides") or []
    if not sides:
        return [(None,) * 9]
    out = []
    for s in sides:
        scores, floor = s.get("scores") or {}, s.get("floor") or {}
        out.append(
            (
                s.get("side"),
                s.get("explainer"),
                s.get("explanation"),
                scores.get("top_and_random"),
                scores.get("random_only"),
                floor.get("top_and_random"),
                floor.get("random_only"),
                floor.get("from_neuron"),
                (s.get("heldout") or {}).get("tokens_top_and_random"),
            )
        )
    return out


def layer_rows(
    layer: int,
    count: int,
    stats: dict[str, Any],
    records: dict[int, dict[str, Any]],
) -> Iterator[tuple[Any, ...]]:
    """Rows of one layer: ``stats`` holds one array per :data:`STAT_KEYS` (``[d_mlp]``),
    ``records`` the explanation record of each explained neuron."""
    columns = [stats[k].tolist() for k in STAT_KEYS]  # one C-level conversion per array
    for n, st in enumerate(zip(*columns, strict=True)):
        st = tuple(None if v != v else v for v in st)  # NaN (non-finite neuron) -> NULL
        for side in side_values(records.get(n)):
            yield (layer, n, side[0], count, *st, *side[1:])


def write_table(path: Path, rows: Iterable[tuple[Any, ...]], meta: dict[str, Any]) -> int:
    """Write a complete index to ``path`` atomically (temporary name, then rename); returns the
    number of rows. ``rows`` are tuples in :data:`NAMES` order."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as e:
        raise OutputNotWritableError(
            f"cannot write the neuron index into {path.parent} ({e.strerror or e}): make "
            "the atlas folder writable"
        ) from None
    os.close(fd)
    try:
        con = sqlite3.connect(tmp)
        try:
            con.executescript("PRAGMA journal_mode=OFF; PRAGMA synchronous=OFF;" + SCHEMA)
            marks = ", ".join("?" * len(NAMES))
            con.executemany(f"INSERT INTO neurons ({', '.join(NAMES)}) VALUES ({marks})", rows)
            n = int(con.execute("SELECT count(*) FROM neurons").fetchone()[0])
            con.execute("INSERT INTO neurons_fts(neurons_fts) VALUES ('rebuild')")
            con.executescript(INDEXES)
            con.executemany(
                "INSERT INTO meta VALUES (?, ?)",
                [(k, json.dumps(v)) for k, v in {**meta, "rows": n}.items()],
            )
            con.commit()
            con.execute("PRAGMA optimize")
        finally:
            con.close()
        with open(tmp, "rb+") as f:  # built unsynced (fast); on disk before it gets its name
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except sqlite3.Error as e:  # a full disk, or a Python whose SQLite lacks FTS5
        Path(tmp).unlink(missing_ok=True)
        raise OutputNotWritableError(
            f"cannot build the neuron index {path} ({e}): free some disk space, or use a Python "
            "whose sqlite3 has FTS5"
        ) from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return n


def _explanation_records(root: Path) -> tuple[dict[int, dict[int, dict[str, Any]]], list[int]]:
    """``{layer: {neuron: record}}`` of ``<atlas>/explanations`` and its explained layers."""
    from ..explain.output import read_explanations

    if not (root / EXPLANATIONS / EXPLANATIONS_MANIFEST).is_file():
        return {}, []
    _, records = read_explanations(root)
    by_layer: dict[int, dict[int, dict[str, Any]]] = {}
    for rec in records:
        by_layer.setdefault(int(rec["layer"]), {})[int(rec["neuron"])] = rec
    return by_layer, sorted(by_layer)


def build_index(atlas_root: str | Path) -> Path:
    """Build ``<atlas>/index.sqlite`` from the atlas and its explanations (always rebuilds).

    Raises:
        RunFormatError: not a complete atlas, or unreadable explanations.
        OutputNotWritableError: the atlas folder is read-only.
    """
    from ..atlas import open_atlas

    t0 = time.perf_counter()
    atlas = open_atlas(atlas_root)
    root = atlas.root
    key = source_key(root)  # before reading: a change while we read makes the next open rebuild
    explained, explained_layers = _explanation_records(root)
    count = atlas.tokens_seen

    def rows() -> Iterator[tuple[Any, ...]]:
        for layer in atlas.layers:
            st = atlas.layer_stats(layer)
            stats = {**st, "density": st["frac_positive"]}
            yield from layer_rows(layer, count, stats, explained.get(layer, {}))

    meta = {
        "schema_version": SCHEMA_VERSION,
        "key": key,
        "model": atlas.model_name,
        "layers": atlas.layers,
        "d_mlp": atlas.d_mlp,
        "has_explanations": bool(explained_layers),
        "explained_layers": explained_layers,
    }
    path = root / INDEX_FILE
    n = write_table(path, rows(), meta)
    log.info("neuron index: %d rows in %.2fs -> %s", n, time.perf_counter() - t0, path)
    return path


def read_info(path: Path) -> IndexInfo | None:
    """The ``meta`` of an index file, or ``None`` when it is missing, unreadable or of another
    schema version."""
    if not path.is_file():
        return None
    try:
        con = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            meta = {k: json.loads(v) for k, v in con.execute("SELECT key, value FROM meta")}
        finally:
            con.close()
        if meta.get("schema_version") != SCHEMA_VERSION:
            return None
        return IndexInfo(
            path=path,
            schema_version=int(meta["schema_version"]),
            key=str(meta["key"]),
            has_explanations=bool(meta["has_explanations"]),
            layers=[int(x) for x in meta["layers"]],
            explained_layers=[int(x) for x in meta["explained_layers"]],
            rows=int(meta["rows"]),
        )
    except (sqlite3.Error, KeyError, ValueError, TypeError):
        return None


def ensure_index(atlas_root: str | Path) -> IndexInfo:
    """The up-to-date index of an atlas: reused when its key matches, else (re)built.

    Raises:
        RunFormatError: not a complete atlas, or unreadable explanations.
        OutputNotWritableError: the index must be (re)built and the atlas folder is read-only.
    """
    from ..atlas import open_atlas

    root = open_atlas(atlas_root).root
    path = root / INDEX_FILE
    info = read_info(path)
    if info is not None and info.key == source_key(root):
        return info
    build_index(root)
    info = read_info(path)
    if info is None:  # pragma: no cover - just written
        raise RunFormatError(f"{path} could not be read back: delete it and retry")
    return info
