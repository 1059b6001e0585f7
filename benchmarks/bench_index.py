"""Text search over a neuron table the size of Gemma 2 2B's (239,616 neurons): build time and
query latencies of the FTS5 index against a plain full-table ``LIKE`` scan, in one run.

1. Synthetic table: 26 layers x 9,216 neurons, one explanation per neuron (``--sides 2``: two)
   in the token-lookup format (``fires on "w" (x, n×), ... · promotes (write scores) ...``);
   words drawn from a Zipf law over ``--vocab`` made-up words, so some words are in most rows
   and some in a handful; scores, floors, densities random. Written with the index's own
   :func:`neuron_signatures.index.table.write_table` (timed: the build).
2. Queries, each run ``--reps`` times through :func:`neuron_signatures.index.query_index` (opens
   the file, checks, runs; what the ``neurons`` command pays), median reported: words of
   several frequencies, two words, a word in every row, with filters (layers, min score);
   sorted by score (the default) and by relevance (BM25: for words found in more than
   :data:`~neuron_signatures.index.relevance.BIG_DOCS` rows, from postings kept at build, see
   :mod:`neuron_signatures.index.relevance`). A relevance row also times FTS5 ranking every
   match (``ORDER BY rank, id``, what the index did before the postings) and checks that both
   give the same rows in the same order (``same_order``).
3. The same queries as a plain full-table scan: ``explanation LIKE '%"w"%'`` per word (with its
   quotes, as the synthetic text quotes every token, so both find the same rows; unquoted for
   template words such as ``fires``), same filters, sort and limit, same file, ``NOT INDEXED``
   (every row read, then sorted). Ratio = full scan / FTS medians. A scan cannot rank by
   relevance: those rows sort by layer. Also printed, not in the ratio: the same ``LIKE`` on
   SQLite's own plan, which walks the sort's B-tree and stops at the limit, so it is fast for a
   word found in many rows and slow for a rare one.

Usage: ``python benchmarks/bench_index.py [--sides 1] [--vocab 30000] [--reps 7] [--out DIR]``
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sqlite3
import statistics
import sys
import tempfile
import time
from datetime import date
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from neuron_signatures.index import IndexQuery, query_index, read_info  # noqa: E402
from neuron_signatures.index.query import SORTS, _sql  # noqa: E402
from neuron_signatures.index.table import SCHEMA_VERSION, write_table  # noqa: E402

N_LAYERS, D_MLP = 26, 9216  # Gemma 2 2B: 239,616 MLP neurons
SYLLABLES = "ka lo mi nu pe ra si to vu ze ba de fi go hu ja ke li mo ny".split()


def make_vocab(n: int, rng: np.random.Generator) -> list[str]:
    """``n`` distinct made-up words (3-4 syllables), rank 0 the most frequent."""
    words: dict[str, None] = {}
    while len(words) < n:
        k = int(rng.integers(3, 5))
        words["".join(rng.choice(SYLLABLES, size=k))] = None
    return list(words)


def synthetic_rows(sides: int, vocab: list[str], seed: int = 0) -> list[tuple[Any, ...]]:
    """Rows in the table's column order (step 1)."""
    rng = np.random.default_rng(seed)
    n = N_LAYERS * D_MLP * sides
    p = 1.0 / np.arange(1, len(vocab) + 1)  # Zipf, s = 1
    words = rng.choice(len(vocab), size=(n, 6), p=p / p.sum())
    means = np.round(rng.gamma(2.0, 2.0, size=(n, 3)), 2)
    counts = rng.integers(1, 40, size=(n, 3))
    score = rng.uniform(-0.2, 1.0, n)
    floor = rng.normal(0.0, 0.08, n)
    dens = rng.beta(1.0, 20.0, n)
    rows = []
    for i in range(n):
        neuron, side = divmod(i, sides)
        layer, nid = divmod(neuron, D_MLP)
        w = [vocab[j] for j in words[i]]
        lead = "fires on" if side == 0 else "goes negative on"
        text = (
            f'{lead} "{w[0]}" ({means[i, 0]}, {counts[i, 0]}×), "{w[1]}" ({means[i, 1]}, '
            f'{counts[i, 1]}×), "{w[2]}" ({means[i, 2]}, {counts[i, 2]}×) · promotes (write '
            f'scores) "{w[3]}", "{w[4]}", "{w[5]}"'
        )
        rows.append(
            (
                layer, nid, ("positive", "negative")[side], 1_000_000, 0.0, 1.0, -3.0,
                float(means[i, 0]) + 1.0, float(dens[i]), float(dens[i]) / 3, "token-lookup",
                text, float(score[i]), float(score[i]) - 0.05, float(floor[i]), 0.0,
                int((nid + 1) % D_MLP), 4096, None, None, None, None, None,
            )
        )  # fmt: skip
    return rows


def like_scan(path: Path, q: IndexQuery, sort: str, vocab: set[str], full: bool) -> int:
    """Step 3: the query as a ``LIKE`` scan (one per word); ``full``: no B-tree index
    (``NOT INDEXED``: every row read, then sorted), else SQLite's own plan."""
    plain = IndexQuery(**{**q.__dict__, "text": None})
    sql, params = _sql(plain, "layer") or ("", [])
    words = (q.text or "").split()
    likes = " AND ".join("explanation LIKE ?" for _ in words)
    head = sql.partition(" ORDER BY ")[0]
    if full:
        head = head.replace(" FROM neurons", " FROM neurons NOT INDEXED", 1)
    glue = " AND " if " WHERE " in head else " WHERE "
    order = SORTS["layer" if sort == "relevance" else sort]
    sql = f"{head}{glue}{likes} ORDER BY {order} LIMIT ?"
    params = [
        *params[:-1],
        *(f'%"{w}"%' if w in vocab else f"%{w}%" for w in words),
        params[-1],
    ]  # quoted: whole words
    con = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return len(con.execute(sql, params).fetchall())
    finally:
        con.close()


def exhaustive_ids(path: Path, q: IndexQuery) -> list[int]:
    """The relevance query with FTS5 ranking every match (``ORDER BY rank, id``)."""
    sql, params = _sql(q, "relevance") or ("", [])
    sql = sql.replace("SELECT ", "SELECT neurons.id, ", 1)
    con = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return [r[0] for r in con.execute(sql, params)]
    finally:
        con.close()


def row_ids(path: Path, rows: list[Any]) -> list[int]:
    """The table ids of result rows (layer, neuron, side identify a row of the bench table)."""
    con = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        sql = "SELECT id FROM neurons WHERE layer = ? AND neuron = ? AND side = ?"
        return [con.execute(sql, (r.layer, r.neuron, r.side)).fetchone()[0] for r in rows]
    finally:
        con.close()


def median_ms(fn: Any, reps: int) -> tuple[float, Any]:
    times, out = [], None
    for _ in range(reps):
        t0 = time.perf_counter()
        out = fn()
        times.append((time.perf_counter() - t0) * 1000.0)
    return statistics.median(times), out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sides", type=int, choices=[1, 2], default=1)
    ap.add_argument("--vocab", type=int, default=30_000)
    ap.add_argument("--reps", type=int, default=7)
    ap.add_argument("--out", default=None, help="folder for the table (default: a temporary one)")
    args = ap.parse_args(argv)
    rng = np.random.default_rng(1)
    vocab = make_vocab(args.vocab, rng)
    t0 = time.perf_counter()
    rows = synthetic_rows(args.sides, vocab)
    gen_s = time.perf_counter() - t0
    tmp = tempfile.TemporaryDirectory() if args.out is None else None
    folder = Path(args.out or (tmp.name if tmp else "."))
    path = folder / "index.sqlite"
    meta = {
        "schema_version": SCHEMA_VERSION,
        "key": "synthetic",
        "model": "synthetic gemma-2-2b shape",
        "layers": list(range(N_LAYERS)),
        "d_mlp": D_MLP,
        "has_explanations": True,
        "explained_layers": list(range(N_LAYERS)),
    }
    t0 = time.perf_counter()
    n = write_table(path, rows, meta)
    build_s = time.perf_counter() - t0
    del rows
    info = read_info(path)
    assert info is not None
    head = {
        "date": date.today().isoformat(),
        "machine": f"{platform.machine()} {os.cpu_count()} cpus, {platform.platform()}",
        "sqlite": sqlite3.sqlite_version,
        "rows": n,
        "generate_s": round(gen_s, 2),
        "build_s": round(build_s, 2),
        "file_mb": round(path.stat().st_size / 2**20, 1),
    }
    print(json.dumps(head))
    w = vocab
    queries = [
        ("common word (rank 3)", IndexQuery(text=w[3])),
        ("mid word (rank 300)", IndexQuery(text=w[300])),
        ("rare word (rank 20000)", IndexQuery(text=w[20_000])),
        ("two words", IndexQuery(text=f"{w[30]} {w[60]}")),
        (
            "word + layers 10-17 + min_score 0.4",
            IndexQuery(text=w[100], layers=list(range(10, 18)), min_score=0.4),
        ),
        ("word in every row ('fires')", IndexQuery(text="fires")),
        ("common word, limit 200", IndexQuery(text=w[0], limit=200)),
        ("common word (rank 3), sort relevance", IndexQuery(text=w[3], sort="relevance")),
        ("commonest word (rank 0), sort relevance", IndexQuery(text=w[0], sort="relevance")),
        ("word in every row, sort relevance", IndexQuery(text="fires", sort="relevance")),
        (
            "two common words + layers 10-17, sort relevance",
            IndexQuery(text=f"{w[0]} fires", layers=list(range(10, 18)), sort="relevance"),
        ),
        ("mid word (rank 300), sort relevance", IndexQuery(text=w[300], sort="relevance")),
    ]
    vocab_set = set(vocab)
    fts_all, scan_all = [], []
    for name, q in queries:
        fts_ms, res = median_ms(lambda q=q: query_index(info, q), args.reps)
        sort = q.sort or "score"
        scan_ms, scan_n = median_ms(
            lambda q=q, s=sort: like_scan(path, q, s, vocab_set, True), args.reps
        )
        walk_ms, _ = median_ms(lambda q=q, s=sort: like_scan(path, q, s, vocab_set, False), 3)
        fts_all.append(fts_ms)
        scan_all.append(scan_ms)
        row = {
            "query": name,
            "fts_ms": round(fts_ms, 2),
            "full_scan_ms": round(scan_ms, 2),
            "ratio": round(scan_ms / fts_ms, 1),
            "scan_on_sort_index_ms": round(walk_ms, 2),
            "rows_fts": len(res.rows),
            "rows_scan": scan_n,
        }
        if sort == "relevance":
            ex_ms, ex_ids = median_ms(lambda q=q: exhaustive_ids(path, q), args.reps)
            row["rank_every_match_ms"] = round(ex_ms, 2)
            row["same_order"] = ex_ids == row_ids(path, res.rows)
        print(json.dumps(row))
    print(
        json.dumps(
            {
                "median_fts_ms": round(statistics.median(fts_all), 2),
                "max_fts_ms": round(max(fts_all), 2),
                "median_full_scan_ms": round(statistics.median(scan_all), 2),
                "ratio_of_medians": round(
                    statistics.median(scan_all) / statistics.median(fts_all), 1
                ),
            }
        )
    )
    if tmp is not None:
        tmp.cleanup()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
