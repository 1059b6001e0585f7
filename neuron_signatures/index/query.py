"""Query the neuron table of an atlas: text (FTS5), filters, sort, limit.

Method:

1. The user's text is cut into words the way FTS5's ``unicode61`` tokenizer cuts it (letters and
   digits; everything else separates), and each word is sent as a quoted FTS5 string. Words are
   ANDed. So FTS5 syntax typed by a user (``"``, ``*``, ``AND``, ``NEAR``, ``-``, ``(``, ``:``)
   is searched for as plain words or ignored as separators; it can never raise.
2. Filters (layers, minimum score, density range, side) become SQL ``WHERE`` terms with bound
   parameters; the sort key is one of :data:`SORTS` (never user SQL).
3. Sorts: score (default with text or ``--min_score``: the best-explained first), detection
   and fuzzing (the LLM's balanced accuracies), density, max, layer (default otherwise),
   relevance (FTS5's BM25 rank, ties by row id; on token-lookup explanations it mostly counts
   repeats and prefers short explanations). FTS5 would rank every matching row (175-190 ms for
   a word in all 239,616 rows on 2 cores); :mod:`.relevance` gives the same rows in the same
   order from postings kept at build (see ``benchmarks/bench_index.py``).
4. Explainers: ``token-lookup`` (offline), ``llm`` or ``all`` (default); each row says which
   (``explainer``, and ``explainer_model`` for the LLM).
"""

from __future__ import annotations

import json
import re
import sqlite3
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..errors import BadArgumentError
from .relevance import BIG_DOCS, sorted_ids, top_ids
from .table import EXPLAINERS, NAMES, IndexInfo, ensure_index

SORTS: dict[str, str] = {
    "score": "score DESC NULLS LAST, layer, neuron, neurons.id",
    "detection": "detection DESC NULLS LAST, layer, neuron, neurons.id",
    "fuzzing": "fuzzing DESC NULLS LAST, layer, neuron, neurons.id",
    "density": "density DESC NULLS LAST, layer, neuron, neurons.id",
    "max": "max DESC NULLS LAST, layer, neuron, neurons.id",
    "layer": "layer, neuron, side, neurons.id",
    "relevance": "neurons_fts.rank, neurons.id",  # rank = bm25, cheaper than bm25()
}
WALKED = ("relevance", "score", "density", "max", "layer")  # sorts :mod:`.relevance` serves
SIDES = ("positive", "negative")
EXPLAINER_CHOICES = (*EXPLAINERS, "all")
_WORD = re.compile(r"\w+", re.UNICODE)


@dataclass(frozen=True)
class IndexQuery:
    """One search of the neuron table; every field is optional.

    Attributes:
        text: words every returned explanation contains (any text; FTS syntax is not obeyed).
        layers: only these layers.
        min_score: only sides whose top-and-random score is at least this.
        min_density: only neurons positive on at least this share of tokens.
        max_density: only neurons positive on at most this share of tokens.
        side: only ``"positive"`` or ``"negative"`` explanations.
        explainer: only rows of this explainer (``token-lookup`` or ``llm``); ``all`` or
            ``None``: every row.
        sort: one of :data:`SORTS`; default ``score`` with text or a minimum score, else
            ``layer``.
        limit: at most this many rows.
    """

    text: str | None = None
    layers: list[int] | None = None
    min_score: float | None = None
    min_density: float | None = None
    max_density: float | None = None
    side: str | None = None
    sort: str | None = None
    limit: int = 50
    explainer: str | None = None


@dataclass(frozen=True)
class NeuronRow:
    """One row of the table: a neuron's statistics and one side's explanation (or none)."""

    layer: int
    neuron: int
    side: str | None
    count: int | None
    mean: float | None
    std: float | None
    min: float | None
    max: float | None
    density: float | None
    frac_above_threshold: float | None
    explainer: str | None
    explanation: str | None
    score: float | None
    score_random_only: float | None
    floor: float | None
    floor_random_only: float | None
    floor_from: int | None
    heldout_tokens: int | None
    explainer_model: str | None = None
    detection: float | None = None
    floor_detection: float | None = None
    fuzzing: float | None = None
    floor_fuzzing: float | None = None

    @property
    def id(self) -> str:
        """The neuron id as researchers type it: ``L17/N345``."""
        return f"L{self.layer}/N{self.neuron}"

    @property
    def source(self) -> str:
        """Which explainer wrote the row: ``token-lookup``, ``llm (model)``, or ``-``."""
        if self.explainer is None:
            return "-"
        model = f" ({self.explainer_model})" if self.explainer_model else ""
        return f"{self.explainer}{model}"

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, **asdict(self)}


@dataclass(frozen=True)
class IndexResult:
    """The rows of a query, the query and how long the database took (ms)."""

    query: IndexQuery
    rows: list[NeuronRow]
    took_ms: float
    info: IndexInfo = field(repr=False)


def fts_query(text: str) -> str | None:
    """The FTS5 MATCH expression of user text (step 1), or ``None`` when it has no word."""
    words = _WORD.findall(text or "")
    if not words:
        return None
    return " ".join('"' + w.replace('"', '""') + '"' for w in words)


def _check(q: IndexQuery, info: IndexInfo, atlas: str) -> str:
    """Validate ``q`` against the index; returns the sort key to use."""
    if q.sort is not None and q.sort not in SORTS:
        raise BadArgumentError(f"--sort {q.sort!r} is not one of: {', '.join(SORTS)}")
    if q.side is not None and q.side not in SIDES:
        raise BadArgumentError(f"--side {q.side!r} is not one of: {', '.join(SIDES)}")
    if q.explainer is not None and q.explainer not in EXPLAINER_CHOICES:
        raise BadArgumentError(
            f"--explainer {q.explainer!r} is not one of: {', '.join(EXPLAINER_CHOICES)}"
        )
    if q.limit < 1:
        raise BadArgumentError(f"--limit {q.limit} must be at least 1")
    bad = sorted(set(q.layers or []) - set(info.layers))
    if bad:
        raise BadArgumentError(
            f"--layers: layer {bad[0]} is not in atlas {atlas} (it has layers "
            f"{_ranges(info.layers)})"
        )
    wants = [
        ("a text query", q.text is not None),
        ("--min_score", q.min_score is not None),
        ("--side", q.side is not None),
        (f"--sort {q.sort}", q.sort in ("score", "detection", "fuzzing")),
        (f"--explainer {q.explainer}", q.explainer in EXPLAINERS),
    ]
    needs = [what for what, asked in wants if asked]
    if needs and not info.has_explanations:
        raise BadArgumentError(
            f"{needs[0]} needs explanations and atlas {atlas} has none: run "
            f"`neuron-signatures explain --atlas {atlas}` first"
        )
    _check_explainer(q, info, atlas)
    sort = q.sort or ("score" if needs else "layer")
    if sort == "relevance" and q.text is None:
        raise BadArgumentError("--sort relevance needs a text query (--query)")
    return sort


def _check_explainer(q: IndexQuery, info: IndexInfo, atlas: str) -> None:
    """An explainer filter, or a sort by the LLM's scores, on an atlas that has its rows."""
    fix = {
        "token-lookup": f"`neuron-signatures explain --atlas {atlas}`",
        "llm": f"`neuron-signatures explain --atlas {atlas} --explainer llm --base_url URL "
        "--model NAME`",
    }
    wanted = q.explainer if q.explainer in EXPLAINERS else None
    if wanted is None and q.sort in ("detection", "fuzzing"):
        wanted = "llm"
    if wanted is not None and info.has_explanations and wanted not in info.explainers:
        what = f"--explainer {wanted}" if q.explainer == wanted else f"--sort {q.sort}"
        raise BadArgumentError(
            f"{what} needs {wanted} explanations and atlas {atlas} has none: run {fix[wanted]} "
            "first"
        )


def _ranges(xs: list[int]) -> str:
    out: list[str] = []
    for x in sorted(xs):
        if out and out[-1].split("-")[-1] == str(x - 1):
            out[-1] = f"{out[-1].split('-')[0]}-{x}"
        else:
            out.append(str(x))
    return ",".join(out)


def _filters(q: IndexQuery) -> tuple[list[str], list[Any]]:
    """The ``WHERE`` terms on ``neurons`` of a query's filters, and their parameters."""
    where: list[str] = []
    params: list[Any] = []
    if q.layers is not None:
        where.append(f"layer IN ({', '.join('?' * len(q.layers))})")
        params.extend(q.layers)
    for term, value in (
        ("score >= ?", q.min_score),
        ("density >= ?", q.min_density),
        ("density <= ?", q.max_density),
        ("side = ?", q.side),
        ("explainer = ?", q.explainer if q.explainer in EXPLAINERS else None),
    ):
        if value is not None:
            where.append(term)
            params.append(value)
    return where, params


def _sql(q: IndexQuery, sort: str) -> tuple[str, list[Any]] | None:
    """The SELECT of a query and its parameters; ``None`` when it cannot match anything."""
    where, params = _filters(q)
    source = "neurons"
    if q.text is not None:
        match = fts_query(q.text)
        if match is None:
            return None
        source = "neurons_fts JOIN neurons ON neurons.id = neurons_fts.rowid"
        where.insert(0, "neurons_fts MATCH ?")
        params.insert(0, match)
    cols = ", ".join(f"neurons.{n}" for n in NAMES)
    sql = f"SELECT {cols} FROM {source}"
    if where:
        sql += " WHERE " + " AND ".join(where)
    sql += f" ORDER BY {SORTS[sort]} LIMIT ?"
    return sql, [*params, int(q.limit)]


def search_neurons(atlas_root: str | Path, query: IndexQuery | None = None) -> IndexResult:
    """Run ``query`` on the atlas's neuron table, building or refreshing it first if needed.

    Raises:
        BadArgumentError: an unknown layer, sort or side, a non-positive limit, or a text/score
            query on an atlas without explanations.
        RunFormatError: not a complete atlas.
    """
    return query_index(ensure_index(atlas_root), query or IndexQuery(), atlas=str(atlas_root))


def query_index(info: IndexInfo, q: IndexQuery, atlas: str = "A") -> IndexResult:
    """Check ``q`` against an index file (``atlas`` names the atlas in messages) and run it.

    Raises:
        BadArgumentError: as :func:`search_neurons`.
    """
    sort = _check(q, info, atlas)
    t0 = time.perf_counter()
    built = _sql(q, sort)
    rows: list[NeuronRow] = []
    if built is not None:
        con = sqlite3.connect(f"file:{info.path}?mode=ro", uri=True)
        try:
            ids = _fast_ids(con, q, sort, info.big_docs)
            if ids is None:
                rows = [NeuronRow(*r) for r in con.execute(*built)]
            else:
                rows = _rows_by_id(con, ids)
        finally:
            con.close()
    return IndexResult(q, rows, (time.perf_counter() - t0) * 1000.0, info)


def _fast_ids(
    con: sqlite3.Connection, q: IndexQuery, sort: str, big_docs: int | None
) -> list[int] | None:
    """The ids of a text query from :mod:`.relevance`'s postings (relevance, or a sort with
    a B-tree index), or ``None`` to let FTS5 and SQL answer."""
    if q.text is None or sort not in WALKED:
        return None
    where, params = _filters(q)
    words = _WORD.findall(q.text)
    if sort == "relevance":
        return top_ids(con, words, where, params, int(q.limit))
    big = BIG_DOCS if big_docs is None else big_docs
    return sorted_ids(con, words, where, params, SORTS[sort], int(q.limit), big)


def _rows_by_id(con: sqlite3.Connection, ids: list[int]) -> list[NeuronRow]:
    """The rows of ``ids``, in that order."""
    cols = ", ".join(NAMES)
    sql = f"SELECT id, {cols} FROM neurons WHERE id IN (SELECT value FROM json_each(?))"
    got = {r[0]: NeuronRow(*r[1:]) for r in con.execute(sql, [json.dumps(ids)])}
    return [got[i] for i in ids]
