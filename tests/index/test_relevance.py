"""The relevance sort's fast path (:mod:`neuron_signatures.index.relevance`) against FTS5: the
same BM25 values, bit for bit, and the same rows in the same order as ranking every match."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from neuron_signatures.index import IndexQuery, query_index
from neuron_signatures.index.query import NeuronRow, _filters
from neuron_signatures.index.relevance import ranked, top_ids
from neuron_signatures.index.table import NAMES
from tests.index.conftest import _write

WORDS = ["fires", "on", "capital", "city", "austin", "texas", "paris", "the", "of", "3", "x"]


def synthetic_rows(n: int = 3000, seed: int = 0) -> list[tuple[Any, ...]]:
    """Explanations of 1-24 words drawn with repeats (Zipf-like), a few NULL; 4 layers."""
    rng = np.random.default_rng(seed)
    p = 1.0 / np.arange(1, len(WORDS) + 1)
    rows = []
    for i in range(n):
        layer, neuron = divmod(i, n // 4)
        k = int(rng.integers(1, 25))
        words = [WORDS[j] for j in rng.choice(len(WORDS), size=k, p=p / p.sum())]
        text = (
            None
            if i % 97 == 0
            else " ".join(words)
            + (" Ünïcode" if i % 13 == 0 else "")
            + (" zanzibar" * (i % 3) if i % 50 == 1 else "")
        )
        side = None if text is None else ("positive", "negative")[i % 2]
        expl = "llm" if i % 3 == 0 else "token-lookup"
        row = dict.fromkeys(NAMES)
        row.update(
            layer=layer, neuron=neuron, side=side, count=10, density=float(rng.random()),
            max=1.0, explainer=None if text is None else expl, explanation=text,
            score=float(rng.random()) if text else None,
        )  # fmt: skip
        rows.append(tuple(row[c] for c in NAMES))
    return rows


@pytest.fixture(scope="module")
def synth(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """A table whose commonest words (in more than 300 rows) have postings."""
    path = tmp_path_factory.mktemp("rel") / "index.sqlite"
    return _write(path, synthetic_rows(), ["llm", "token-lookup"], [0, 1, 2, 3], big_docs=300)


def exhaustive(path: Path, q: IndexQuery) -> list[int]:
    """The ids of ``q`` ranked by FTS5 over every match (``ORDER BY rank, id``)."""
    from neuron_signatures.index.query import fts_query

    where, params = _filters(q)
    sql = (
        "SELECT neurons.id FROM neurons_fts JOIN neurons ON neurons.id = neurons_fts.rowid "
        "WHERE neurons_fts MATCH ?"
        + "".join(f" AND {w}" for w in where)
        + " ORDER BY neurons_fts.rank, neurons.id LIMIT ?"
    )
    con = sqlite3.connect(path)
    try:
        return [r[0] for r in con.execute(sql, [fts_query(q.text or ""), *params, q.limit])]
    finally:
        con.close()


@pytest.mark.parametrize("terms", [["fires"], ["on"], ["fires", "on"], ["capital", "fires"]])
def test_scores_equal_fts5_rank_bit_for_bit(synth: Any, terms: list[str]) -> None:
    con = sqlite3.connect(synth.path)
    try:
        got = ranked(con, terms)
        assert got is not None
        ids, rank = got
        match = " ".join(f'"{t}"' for t in terms)
        want = dict(
            con.execute("SELECT rowid, rank FROM neurons_fts WHERE neurons_fts MATCH ?", [match])
        )
    finally:
        con.close()
    assert len(ids) == len(want) > 300
    np.testing.assert_array_equal(rank, [want[i] for i in ids.tolist()])  # exact, not approx
    order = sorted(want, key=lambda i: (want[i], i))
    assert ids.tolist() == order


@pytest.mark.parametrize(
    "q",
    [
        IndexQuery(text="fires"),
        IndexQuery(text="on", limit=7),
        IndexQuery(text="FIRES on", limit=500),
        IndexQuery(text="fires", layers=[3], limit=40),
        IndexQuery(text="on fires", side="negative", min_score=0.9, limit=30),
        IndexQuery(text="fires", explainer="llm", min_density=0.5, limit=2000),
        IndexQuery(text="fires", layers=[0], min_score=2.0),  # nothing passes the filters
    ],
)
def test_fast_path_equals_exhaustive_order(synth: Any, q: IndexQuery) -> None:
    from neuron_signatures.index.query import _WORD

    con = sqlite3.connect(synth.path)
    try:
        where, params = _filters(q)
        fast = top_ids(con, _WORD.findall(q.text or ""), where, params, q.limit)
    finally:
        con.close()
    assert fast is not None  # the fast path answered
    assert fast == exhaustive(synth.path, q)
    rows = query_index(synth, IndexQuery(**{**q.__dict__, "sort": "relevance"})).rows
    assert [(r.layer, r.neuron) for r in rows] == [(r.layer, r.neuron) for r in by_id(synth, fast)]


def by_id(info: Any, ids: list[int]) -> list[NeuronRow]:
    con = sqlite3.connect(info.path)
    try:
        got = {
            r[0]: NeuronRow(*r[1:])
            for r in con.execute(f"SELECT id, {', '.join(NAMES)} FROM neurons")
        }
    finally:
        con.close()
    return [got[i] for i in ids]


@pytest.mark.parametrize("text", ["zanzibar", "fires zanzibar", "Ünïcode fires", "x_y"])
def test_other_words_rank_in_sql_with_the_same_order(synth: Any, text: str) -> None:
    """A word in few rows (no postings), or one the tokenizer may fold or split: no fast path,
    FTS5 ranks every match, ties by id."""
    from neuron_signatures.index.query import _WORD

    con = sqlite3.connect(synth.path)
    try:
        assert top_ids(con, _WORD.findall(text), [], [], 50) is None
    finally:
        con.close()
    q = IndexQuery(text=text, sort="relevance", limit=60)
    got = query_index(synth, q).rows
    want = by_id(synth, exhaustive(synth.path, q))
    assert [(r.layer, r.neuron, r.side) for r in got] == [(r.layer, r.neuron, r.side) for r in want]


@pytest.mark.parametrize(
    "q",
    [
        IndexQuery(text="fires", sort="score"),
        IndexQuery(text="on fires", sort="density", limit=300),
        IndexQuery(text="fires", sort="max", layers=[1, 2], limit=20),
        IndexQuery(text="FIRES", sort="layer", side="positive", explainer="llm", limit=90),
        IndexQuery(text="on", sort="score", min_score=0.95, limit=5000),
        IndexQuery(text="fires", sort="score", layers=[0], min_score=2.0),
    ],
)
def test_sorted_walk_equals_fts_and_sort(synth: Any, q: IndexQuery) -> None:
    """A text query sorted by an indexed column, answered by walking the sort's B-tree over the
    postings' matches, gives the rows of FTS5 + ORDER BY, in the same order."""
    from neuron_signatures.index.query import _WORD, SORTS, _sql
    from neuron_signatures.index.relevance import sorted_ids

    con = sqlite3.connect(synth.path)
    try:
        where, params = _filters(q)
        fast = sorted_ids(con, _WORD.findall(q.text or ""), where, params, SORTS[q.sort or ""],
                          q.limit, synth.big_docs)  # fmt: skip
        sql, sql_params = _sql(q, q.sort or "") or ("", [])
        sql = sql.replace("SELECT ", "SELECT neurons.id, ", 1)
        want = [r[0] for r in con.execute(sql, sql_params)]
    finally:
        con.close()
    assert fast is not None and fast == want
    rows = query_index(synth, q).rows
    assert [(r.layer, r.neuron, r.side) for r in rows] == [
        (r.layer, r.neuron, r.side) for r in by_id(synth, want)
    ]
