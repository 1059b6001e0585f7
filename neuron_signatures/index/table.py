"""The neuron table of an atlas: one SQLite file, ``<atlas>/index.sqlite``, built on demand.

Method:

1. One row per (layer, neuron, explainer, side): the atlas statistics of the neuron (read a layer
   at a time with :meth:`Atlas.layer_stats`) and one row per explained side (positive, negative)
   of each explainer that explains it: the offline token lookup (``<atlas>/explanations/``,
   :func:`neuron_signatures.explain.output.read_explanations`) first, then the LLM
   (``<atlas>/explanations-llm/``, :func:`neuron_signatures.explain.llm_output.
   read_llm_explanations`; ``explainer_model`` names its model), each with its explanation,
   simulation scores and floors, and for the LLM its detection and fuzzing balanced accuracies
   and their floors where the record holds them (any score missing is NULL). A neuron without
   explanation has one row whose side is NULL; an LLM record that holds an error adds no row.
2. An FTS5 table (external content: it indexes ``neurons.explanation`` without a copy) answers
   text queries; B-tree indexes serve the filters and sorts. For the relevance sort
   (:mod:`.relevance`) the table also keeps each row's FTS5 document length (``doclen``) and,
   for the words in more than :data:`~.relevance.BIG_DOCS` rows, the rows that hold the word
   more than once (``repeats``).
3. ``meta`` holds the schema version and the key of what the table was built from: sha256 of
   ``atlas.json`` and, per explanations folder, of its manifest plus the size and mtime of each
   layer file (a resumed explain run adds layers without touching its manifest). When the key
   or the schema differs, the table is rebuilt.
4. The file is written under a temporary name in the atlas folder and renamed into place, so a
   reader never sees half a table and two builders never corrupt each other.

Schema versions: 1 (offline explanations only); 2 (``explainer_model``, detection and fuzzing
columns, LLM rows, ``doclen`` and ``repeats``). A file of another version is rebuilt.
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
from .columns import (  # noqa: F401  (re-exported: the table's names)
    COLUMNS,
    EXPLAINERS,
    EXPLANATIONS,
    EXPLANATIONS_MANIFEST,
    INDEX_FILE,
    LLM_EXPLANATIONS,
    N_SIDE,
    NAMES,
    SCHEMA_VERSION,
    STAT_KEYS,
)

log = logging.getLogger(__name__)

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
CREATE INDEX neurons_explainer ON neurons (explainer);
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
    explainers: tuple[str, ...] = ()  # the explainers of the table's rows (:data:`EXPLAINERS`)
    big_docs: int | None = None  # the repeats threshold it was built with (:mod:`.relevance`)


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def source_key(atlas_root: Path) -> str:
    """The key of what the table is built from (step 3 of the method)."""
    parts: list[Any] = [SCHEMA_VERSION, _sha256(atlas_root / "atlas.json")]
    for folder in (EXPLANATIONS, LLM_EXPLANATIONS):
        exp = atlas_root / folder
        if (exp / EXPLANATIONS_MANIFEST).is_file():
            parts.append([folder, _sha256(exp / EXPLANATIONS_MANIFEST)])
            for p in sorted((exp / "layers").glob("layer_*.jsonl")):
                st = p.stat()
                parts.append([p.name, st.st_size, st.st_mtime_ns])
    return hashlib.sha256(json.dumps(parts).encode()).hexdigest()


def write_table(
    path: Path,
    rows: Iterable[tuple[Any, ...]],
    meta: dict[str, Any],
    big_docs: int | None = None,
) -> int:
    """Write a complete index to ``path`` atomically (temporary name, then rename); returns the
    number of rows. ``rows`` are tuples in :data:`NAMES` order; ``big_docs``: the threshold of
    the relevance sort's ``repeats`` (default :data:`.relevance.BIG_DOCS`)."""
    from .relevance import BIG_DOCS, write_relevance_tables

    big = BIG_DOCS if big_docs is None else int(big_docs)
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
            write_relevance_tables(con, big)
            explainers = [
                e
                for (e,) in con.execute(
                    "SELECT DISTINCT explainer FROM neurons WHERE explainer IS NOT NULL"
                )
            ]
            extra = {"rows": n, "explainers": sorted(explainers), "big_docs": big}
            con.executemany(
                "INSERT INTO meta VALUES (?, ?)",
                [(k, json.dumps(v)) for k, v in {**meta, **extra}.items()],
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


def build_index(atlas_root: str | Path) -> Path:
    """Build ``<atlas>/index.sqlite`` from the atlas and its explanations (always rebuilds).

    Raises:
        RunFormatError: not a complete atlas, or unreadable explanations.
        OutputNotWritableError: the atlas folder is read-only.
    """
    from ..atlas import open_atlas
    from .rows import explanation_records, layer_rows, llm_records

    t0 = time.perf_counter()
    atlas = open_atlas(atlas_root)
    root = atlas.root
    key = source_key(root)  # before reading: a change while we read makes the next open rebuild
    explained = explanation_records(root)
    by_llm, model = llm_records(root)
    explained_layers = sorted(set(explained) | set(by_llm))
    count = atlas.tokens_seen

    def rows() -> Iterator[tuple[Any, ...]]:
        for layer in atlas.layers:
            st = atlas.layer_stats(layer)
            stats = {**st, "density": st["frac_positive"]}
            offline, llm = explained.get(layer, {}), by_llm.get(layer, {})
            yield from layer_rows(layer, count, stats, offline, llm, model)

    meta = {
        "schema_version": SCHEMA_VERSION,
        "key": key,
        "model": atlas.model_name,
        "layers": atlas.layers,
        "d_mlp": atlas.d_mlp,
        "has_explanations": bool(explained_layers),
        "explained_layers": explained_layers,
        "llm_model": model,
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
            explainers=tuple(str(x) for x in meta.get("explainers", [])),
            big_docs=None if meta.get("big_docs") is None else int(meta["big_docs"]),
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
