"""The relevance sort of a text query: FTS5's BM25 order, exact, without ranking every match.

FTS5 ranks a row by BM25 (``bm25()`` in ``fts5_aux.c``): for the query's phrases ``i`` (one per
word here), a row of ``D`` tokens in which phrase ``i`` occurs ``f_i`` times,

    score = Σ_i idf_i · f_i (k1 + 1) / (f_i + k1 (1 − b + b D / avgdl)),   rank = −score,

with ``k1 = 1.2``, ``b = 0.75``, ``idf_i = log((N − n_i + 0.5) / (n_i + 0.5))`` (``1e-6`` when
not positive), ``N`` the rows, ``n_i`` the rows holding phrase ``i`` and ``avgdl`` the mean
``D``. FTS5 computes it row by row (reading each row's length and positions): about a
microsecond a row, 175-190 ms for a word found in all 239,616 rows of a Gemma 2 2B table. The
words found in most rows are few (the template words of the explanations, digits, the commonest
tokens), so:

1. At build (:func:`write_relevance_tables`), keep every row's FTS5 length (``doclen``, read
   from FTS5's own ``_docsize``) and, for each word in more than :data:`BIG_DOCS` rows, its
   postings: the ids of the rows holding it and how often (``postings``, read from FTS5's
   ``fts5vocab`` instance table).
2. A query whose words are all such words (:func:`top_ids`) computes the score of every
   matching row with numpy from those arrays, with the same operations in the same order as
   ``bm25()`` (IEEE doubles, so the same values), and orders by ``(rank, id)``: the exhaustive
   SQL order ``ORDER BY rank, id``. The filters are applied to the best rows first, in growing
   chunks, until ``limit`` rows pass.
3. Any other query has a word in at most :data:`BIG_DOCS` rows, so at most that many matches:
   FTS5 ranks them all (a few ms); so does a word that is not plain ASCII letters and digits
   (the tokenizer may fold or split it).
4. The other sorts with an index (score, density, max, layer) use the postings too when more
   than :data:`BIG_DOCS` rows match (:func:`sorted_ids`): walk the sort's B-tree with the
   filters and keep the rows among the matches, until ``limit`` (a word in most rows fills the
   limit within the first rows walked); fewer matches go through FTS5 and a sort.

``tests/index/test_relevance.py`` pins the numpy scores to FTS5's ``rank`` and the order to
the exhaustive one.
"""

from __future__ import annotations

import json
import math
import sqlite3
from typing import Any

import numpy as np

BIG_DOCS = 20_000  # words in more rows get postings (step 1)
K1, B = 1.2, 0.75  # FTS5's bm25() constants

TABLES = """
CREATE TABLE doclen (one INTEGER PRIMARY KEY CHECK (one = 1), ids BLOB NOT NULL,
    lengths BLOB NOT NULL);
CREATE TABLE postings (term TEXT PRIMARY KEY, ids BLOB NOT NULL, freqs BLOB NOT NULL)
    WITHOUT ROWID;
"""


def _varint(b: bytes) -> int:
    """The first SQLite varint of ``b`` (FTS5's ``_docsize`` of a one-column table)."""
    v = 0
    for i, c in enumerate(b[:9]):
        if i == 8:
            return (v << 8) | c
        v = (v << 7) | (c & 0x7F)
        if not c & 0x80:
            break
    return v


def write_relevance_tables(con: sqlite3.Connection, big_docs: int = BIG_DOCS) -> None:
    """Step 1 on the connection building the index (after the FTS5 rebuild)."""
    con.executescript(TABLES)
    rows = con.execute("SELECT id, sz FROM neurons_fts_docsize ORDER BY id").fetchall()
    ids = np.fromiter((r[0] for r in rows), np.int32, len(rows))
    lengths = np.fromiter((_varint(r[1]) for r in rows), np.int32, len(rows))
    con.execute("INSERT INTO doclen VALUES (1, ?, ?)", (ids.tobytes(), lengths.tobytes()))
    con.execute("CREATE VIRTUAL TABLE temp.fts_rows USING fts5vocab(main, neurons_fts, row)")
    con.execute("CREATE VIRTUAL TABLE temp.fts_inst USING fts5vocab(main, neurons_fts, instance)")
    try:
        big = [t for (t,) in con.execute("SELECT term FROM fts_rows WHERE doc > ?", (big_docs,))]
        for term in big:
            got = con.execute(
                "SELECT doc, count(*) FROM fts_inst WHERE term = ? GROUP BY doc ORDER BY doc",
                (term,),
            ).fetchall()
            arr = np.array(got, np.int64).reshape(-1, 2)
            if arr[:, 1].max(initial=0) > np.iinfo(np.uint16).max:
                continue  # no postings: such a term ranks in SQL (step 3)
            con.execute(
                "INSERT INTO postings VALUES (?, ?, ?)",
                (term, arr[:, 0].astype(np.int32).tobytes(), arr[:, 1].astype(np.uint16).tobytes()),
            )
    finally:
        con.execute("DROP TABLE temp.fts_rows")
        con.execute("DROP TABLE temp.fts_inst")


def plain_terms(words: list[str]) -> list[str] | None:
    """The FTS5 terms of ``words`` when each is one plain ASCII token, else ``None``."""
    if not words or not all(w.isascii() and w.isalnum() for w in words):
        return None
    return [w.lower() for w in words]


def bm25_scores(
    n_rows: int, avgdl: float, docs: list[int], freqs: list[np.ndarray], lengths: np.ndarray
) -> np.ndarray:
    """``bm25()``'s score (not yet negated) of rows of ``lengths`` tokens, phrase ``i`` found
    ``freqs[i]`` times in each and in ``docs[i]`` rows of ``n_rows``: the operations of
    ``fts5Bm25Function`` in its order (step 2)."""
    d = lengths.astype(np.float64)
    score = np.zeros(len(d))
    for n_hit, f in zip(docs, freqs, strict=True):
        idf = math.log((n_rows - n_hit + 0.5) / (n_hit + 0.5))
        if idf <= 0.0:
            idf = 1e-6
        ff = f.astype(np.float64)
        score += idf * ((ff * (K1 + 1.0)) / (ff + K1 * (1 - B + B * d / avgdl)))
    return score


def _postings(con: sqlite3.Connection, terms: list[str]) -> list[tuple[np.ndarray, np.ndarray]]:
    out = []
    for t in terms:
        row = con.execute("SELECT ids, freqs FROM postings WHERE term = ?", (t,)).fetchone()
        if row is None:
            return []
        out.append((np.frombuffer(row[0], np.int32), np.frombuffer(row[1], np.uint16)))
    return out


def _matching(posts: list[tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
    """The ids (ascending) of the rows in every one of ``posts``."""
    ids = posts[0][0]
    for other, _ in posts[1:]:
        ids = np.intersect1d(ids, other, assume_unique=True)
    return ids


def matching_ids(con: sqlite3.Connection, words: list[str]) -> np.ndarray | None:
    """The ids (ascending) of the rows holding every word, from the postings; ``None`` when
    a word has none (or is not one plain ASCII token)."""
    terms = plain_terms(words)
    posts = [] if terms is None else _postings(con, terms)
    return _matching(posts) if posts else None


def ranked(con: sqlite3.Connection, terms: list[str]) -> tuple[np.ndarray, np.ndarray] | None:
    """``(ids, rank)`` of every row holding all ``terms``, in ``(rank, id)`` order; ``None``
    when a term has no postings (it is in at most :data:`BIG_DOCS` rows)."""
    posts = _postings(con, terms)
    if not posts:
        return None
    ids = _matching(posts)
    freqs = [f[np.searchsorted(p, ids)] for p, f in posts]
    all_ids, lengths = con.execute("SELECT ids, lengths FROM doclen").fetchone()
    all_ids = np.frombuffer(all_ids, np.int32)
    lengths = np.frombuffer(lengths, np.int32)
    n_rows = len(all_ids)
    avgdl = float(int(lengths.sum(dtype=np.int64))) / float(n_rows)
    rank = -1.0 * bm25_scores(
        n_rows,
        avgdl,
        [len(p) for p, _ in posts],
        freqs,
        lengths[np.searchsorted(all_ids, ids)],
    )
    order = np.argsort(rank, kind="stable")  # ids ascend: ties stay in id order
    return ids[order], rank[order]


def top_ids(
    con: sqlite3.Connection, words: list[str], where: list[str], params: list[Any], limit: int
) -> list[int] | None:
    """The ids of the ``limit`` most relevant rows that hold every word and pass the filters
    ``where`` (SQL terms on ``neurons`` with ``params``), or ``None`` when the fast path does not
    apply (step 3: rank in SQL instead)."""
    terms = plain_terms(words)
    got = None if terms is None else ranked(con, terms)
    if got is None:
        return None
    ids = got[0]
    if not where:
        return ids[:limit].tolist()
    out: list[int] = []
    lo, step = 0, max(4 * limit, 256)
    sql = "SELECT id FROM neurons WHERE id IN (SELECT value FROM json_each(?)) AND " + " AND ".join(
        where
    )
    while lo < len(ids) and len(out) < limit:
        chunk = ids[lo : lo + step].tolist()
        ok = {r[0] for r in con.execute(sql, [json.dumps(chunk), *params])}
        out += [i for i in chunk if i in ok][: limit - len(out)]
        lo, step = lo + step, step * 4
    return out


def sorted_ids(
    con: sqlite3.Connection,
    words: list[str],
    where: list[str],
    params: list[Any],
    order_by: str,
    limit: int,
    big_docs: int = BIG_DOCS,
) -> list[int] | None:
    """Step 4: the ids of the first ``limit`` rows in ``order_by`` order that hold every word
    and pass ``where``; ``None`` when at most ``big_docs`` (the table's threshold) rows match
    (or a word has no postings): then FTS5 and a sort are cheaper."""
    ids = matching_ids(con, words)
    if ids is None or len(ids) <= big_docs:
        return None
    sql = "SELECT neurons.id FROM neurons"
    if where:
        sql += " WHERE " + " AND ".join(where)
    cur = con.execute(f"{sql} ORDER BY {order_by}", params)
    out: list[int] = []
    while len(out) < limit:
        chunk = np.array([r[0] for r in cur.fetchmany(4096)], np.int64)
        if not len(chunk):
            break
        at = np.searchsorted(ids, chunk).clip(0, len(ids) - 1)
        out += chunk[ids[at] == chunk].tolist()[: limit - len(out)]
    cur.close()
    return out
