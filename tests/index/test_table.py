"""The neuron table of a real explained atlas: its rows equal the atlas stats and the
explanation records; it is rebuilt exactly when its sources change; writes are atomic."""

from __future__ import annotations

import json
import shutil
import sqlite3
from pathlib import Path

import numpy as np
import pytest

from neuron_signatures.atlas import open_atlas
from neuron_signatures.errors import BadArgumentError, OutputNotWritableError
from neuron_signatures.explain.output import read_explanations
from neuron_signatures.index import INDEX_FILE, IndexQuery, ensure_index, search_neurons
from neuron_signatures.index.table import NAMES, write_table
from tests.explain.conftest import PLANTED_LAYER, PLANTED_NEURON, PLANTED_WORD


def all_rows(atlas: Path) -> list[sqlite3.Row]:
    con = sqlite3.connect(atlas / INDEX_FILE)
    con.row_factory = sqlite3.Row
    try:
        return list(con.execute("SELECT * FROM neurons ORDER BY layer, neuron, side"))
    finally:
        con.close()


def test_rows_equal_atlas_stats_and_explanations(atlas_copy: Path) -> None:
    info = ensure_index(atlas_copy)
    atlas = open_atlas(atlas_copy)
    _, recs = read_explanations(atlas_copy)
    by_key = {(r["layer"], r["neuron"], s["side"]): s for r in recs for s in r["sides"]}
    rows = all_rows(atlas_copy)
    assert info.has_explanations and info.rows == len(rows) == len(by_key)
    assert {(r["layer"], r["neuron"], r["side"]) for r in rows} == set(by_key)
    for layer in atlas.layers:
        st = atlas.layer_stats(layer)
        mine = [r for r in rows if r["layer"] == layer and r["side"] == "positive"]
        assert [r["neuron"] for r in mine] == list(range(atlas.d_mlp))
        for col, key in (
            ("mean", "mean"),
            ("std", "std"),
            ("max", "max"),
            ("min", "min"),
            ("density", "frac_positive"),
        ):
            np.testing.assert_array_equal([r[col] for r in mine], st[key])
        assert {r["count"] for r in mine} == {atlas.tokens_seen}
    for r in rows:
        side = by_key[(r["layer"], r["neuron"], r["side"])]
        assert r["explanation"] == side["explanation"]
        assert r["score"] == side["scores"]["top_and_random"]
        assert r["score_random_only"] == side["scores"]["random_only"]
        assert r["floor"] == side["floor"]["top_and_random"]
        assert r["floor_from"] == side["floor"]["from_neuron"]


def test_planted_detector_is_found_by_its_token(atlas_copy: Path) -> None:
    res = search_neurons(atlas_copy, IndexQuery(text=PLANTED_WORD, sort="score", min_score=0.9))
    top = res.rows[0]
    assert (top.layer, top.neuron, top.side) == (PLANTED_LAYER, PLANTED_NEURON, "positive")
    assert top.id == f"L{PLANTED_LAYER}/N{PLANTED_NEURON}"
    assert top.score is not None and top.score >= 0.9 and PLANTED_WORD in (top.explanation or "")
    assert all(r.score is not None and r.score >= 0.9 for r in res.rows)


def test_reused_until_a_source_changes(atlas_copy: Path) -> None:
    path = atlas_copy / INDEX_FILE
    first = ensure_index(atlas_copy)
    stamp = path.stat().st_mtime_ns
    assert ensure_index(atlas_copy).key == first.key and path.stat().st_mtime_ns == stamp
    # an explanation layer rewritten (as a resumed run does): rebuilt with its new text
    layer_file = atlas_copy / "explanations" / "layers" / "layer_001.jsonl"
    recs = [json.loads(line) for line in layer_file.read_text().splitlines()]
    recs[0]["sides"][0]["explanation"] = "fires on zanzibar"
    layer_file.write_text("".join(json.dumps(r) + "\n" for r in recs))
    got = search_neurons(atlas_copy, IndexQuery(text="zanzibar"))
    assert [r.id for r in got.rows] == ["L1/N0"] and got.info.key != first.key
    # the explanations removed: rebuilt without them, text search says so
    shutil.rmtree(atlas_copy / "explanations")
    assert not ensure_index(atlas_copy).has_explanations
    with pytest.raises(BadArgumentError, match="explain --atlas"):
        search_neurons(atlas_copy, IndexQuery(text="Austin"))


def test_other_schema_version_is_rebuilt(atlas_copy: Path) -> None:
    info = ensure_index(atlas_copy)
    con = sqlite3.connect(atlas_copy / INDEX_FILE)
    con.execute("UPDATE meta SET value = '0' WHERE key = 'schema_version'")
    con.commit()
    con.close()
    assert ensure_index(atlas_copy) == info  # rebuilt: the same table again


def test_atlas_without_explanations(planted_atlas: Path, tmp_path: Path) -> None:
    root = tmp_path / "A"
    shutil.copytree(planted_atlas, root)
    atlas = open_atlas(root)
    res = search_neurons(root, IndexQuery(sort="max", limit=10**6))
    assert len(res.rows) == len(atlas.layers) * atlas.d_mlp
    assert all(r.side is None and r.explanation is None for r in res.rows)
    maxes = [r.max for r in res.rows]
    assert maxes == sorted(maxes, reverse=True)
    for q in (IndexQuery(text="x"), IndexQuery(min_score=0.1), IndexQuery(sort="score")):
        with pytest.raises(BadArgumentError, match="has none: run `neuron-signatures explain"):
            search_neurons(root, q)


def test_failed_build_leaves_nothing(tmp_path: Path) -> None:
    def rows():  # type: ignore[no-untyped-def]
        yield (0, 0, None, *([None] * (len(NAMES) - 3)))
        raise RuntimeError("killed")

    with pytest.raises(RuntimeError):
        write_table(tmp_path / INDEX_FILE, rows(), {"schema_version": 1})
    assert list(tmp_path.iterdir()) == []


def test_unwritable_folder_names_the_fix(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(OutputNotWritableError, match="writable"):
        write_table(blocker / INDEX_FILE, [], {})


def test_sqlite_failure_is_a_domain_error(tmp_path: Path) -> None:
    bad_row = [(0, 0, None, 1, 2)]  # too few values: SQLite refuses the insert
    with pytest.raises(OutputNotWritableError, match="neuron index"):
        write_table(tmp_path / INDEX_FILE, bad_row, {})
    assert list(tmp_path.iterdir()) == []
