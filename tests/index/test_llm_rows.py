"""The LLM's explanations in the neuron table (beside the offline ones): rows, explainer filter,
scores, rebuild when ``explanations-llm/`` changes, old schema rebuilt; the ``neurons`` command
and the web page say which explainer wrote each row."""

from __future__ import annotations

import json
import shutil
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from neuron_signatures.cli import main
from neuron_signatures.errors import BadArgumentError
from neuron_signatures.index import INDEX_FILE, IndexQuery, ensure_index, search_neurons
from tests.explain.conftest import PLANTED_LAYER, PLANTED_NEURON, PLANTED_WORD
from tests.index.conftest import LLM_MODEL

PLANTED = f"L{PLANTED_LAYER}/N{PLANTED_NEURON}"


@pytest.fixture()
def mixed_copy(mixed_atlas: Path, tmp_path: Path) -> Path:
    root = tmp_path / "A"
    shutil.copytree(mixed_atlas, root)
    return root


def test_llm_rows_beside_offline_ones(mixed_atlas: Path) -> None:
    info = ensure_index(mixed_atlas)
    assert info.explainers == ("llm", "token-lookup")
    res = search_neurons(mixed_atlas, IndexQuery(layers=[PLANTED_LAYER], limit=10**6))
    rows = [r for r in res.rows if (r.layer, r.neuron) == (PLANTED_LAYER, PLANTED_NEURON)]
    assert [r.explainer for r in rows] == ["token-lookup", "llm"]
    off, llm = rows
    assert off.explainer_model is None and off.source == "token-lookup"
    assert off.detection is None and off.fuzzing is None and off.score == 0.97
    assert (llm.explainer_model, llm.source) == (LLM_MODEL, f"llm ({LLM_MODEL})")
    assert llm.explanation == f'the token "{PLANTED_WORD}"' and llm.score == 0.93
    assert (llm.detection, llm.floor_detection, llm.fuzzing, llm.floor_fuzzing) == (
        0.9, 0.5, 0.85, 0.5,
    )  # fmt: skip
    by_neuron = {(r.neuron, r.explainer) for r in res.rows}
    assert (1, "llm") in by_neuron and (2, "llm") not in by_neuron  # the error adds no row
    assert (2, "token-lookup") in by_neuron
    one = next(r for r in res.rows if r.neuron == 1 and r.explainer == "llm")
    assert one.detection == 0.6 and one.fuzzing is None  # a missing score is NULL


def test_text_search_explainer_filter_and_llm_sorts(mixed_atlas: Path) -> None:
    def got(**kw: Any) -> list[tuple[str, str | None]]:
        return [(r.id, r.explainer) for r in search_neurons(mixed_atlas, IndexQuery(**kw)).rows]

    assert got(text=PLANTED_WORD) == [
        (PLANTED, "token-lookup"),  # 0.97
        (PLANTED, "llm"),  # 0.93
        (f"L{PLANTED_LAYER}/N1", "llm"),  # 0.2
    ]
    assert got(text="city", explainer="llm") == [(f"L{PLANTED_LAYER}/N1", "llm")]
    assert got(text="city", explainer="token-lookup") == []
    assert got(text=PLANTED_WORD, explainer="all") == got(text=PLANTED_WORD)
    assert got(sort="detection", explainer="llm") == [
        (PLANTED, "llm"),
        (f"L{PLANTED_LAYER}/N1", "llm"),
    ]
    assert got(sort="fuzzing", limit=1) == [(PLANTED, "llm")]
    with pytest.raises(BadArgumentError, match="--explainer 'gpt' is not one of"):
        search_neurons(mixed_atlas, IndexQuery(explainer="gpt"))


def test_rebuilt_when_the_llm_folder_changes(mixed_copy: Path) -> None:
    first = ensure_index(mixed_copy)
    layer_file = mixed_copy / "explanations-llm" / "layers" / f"layer_{PLANTED_LAYER:03d}.jsonl"
    recs = [json.loads(line) for line in layer_file.read_text().splitlines()]
    recs[1]["sides"][0]["explanation"] = "zanzibar and its spices"
    layer_file.write_text("".join(json.dumps(r) + "\n" for r in recs))
    res = search_neurons(mixed_copy, IndexQuery(text="zanzibar"))
    assert [(r.id, r.explainer) for r in res.rows] == [(f"L{PLANTED_LAYER}/N1", "llm")]
    assert res.info.key != first.key
    shutil.rmtree(mixed_copy / "explanations-llm")
    assert ensure_index(mixed_copy).explainers == ("token-lookup",)
    for q, what in (
        (IndexQuery(explainer="llm"), "--explainer llm needs llm explanations"),
        (IndexQuery(sort="detection"), "--sort detection needs llm explanations"),
    ):
        with pytest.raises(BadArgumentError, match=what) as e:
            search_neurons(mixed_copy, q)
        assert "--explainer llm --base_url" in str(e.value)


def test_a_version_1_index_is_rebuilt(mixed_copy: Path) -> None:
    """An index written by the previous schema (no LLM columns) is replaced, not misread."""
    path = mixed_copy / INDEX_FILE
    path.unlink(missing_ok=True)
    con = sqlite3.connect(path)
    con.executescript(
        "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);"
        "CREATE TABLE neurons (id INTEGER PRIMARY KEY, layer INTEGER, neuron INTEGER);"
    )
    con.executemany(
        "INSERT INTO meta VALUES (?, ?)",
        [("schema_version", "1"), ("key", '"old"'), ("has_explanations", "true"),
         ("layers", "[0]"), ("explained_layers", "[0]"), ("rows", "0")],
    )  # fmt: skip
    con.commit()
    con.close()
    res = search_neurons(mixed_copy, IndexQuery(text=PLANTED_WORD, explainer="llm"))
    assert res.info.schema_version == 2 and res.rows[0].explainer_model == LLM_MODEL


def test_neurons_command_shows_the_explainer(
    mixed_atlas: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["neurons", "--atlas", str(mixed_atlas), "--query", PLANTED_WORD]
    assert main(argv) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[:7] == [
        "neuron", "side", "explainer", "score", "floor", "detection", "fuzzing",
    ]  # fmt: skip
    assert lines[1].split()[:4] == [PLANTED, "positive", "token-lookup", "0.970"]
    assert lines[2].split()[:8] == [
        PLANTED, "positive", "llm", f"({LLM_MODEL})", "0.930", "0.010", "0.900", "0.850",
    ]  # fmt: skip
    assert main([*argv, "--explainer", "llm", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["query"]["explainer"] == "llm"
    assert [(r["id"], r["explainer"], r["explainer_model"]) for r in out["rows"]] == [
        (PLANTED, "llm", LLM_MODEL),
        (f"L{PLANTED_LAYER}/N1", "llm", LLM_MODEL),
    ]
    assert out["rows"][0]["detection"] == 0.9 and out["rows"][0]["fuzzing"] == 0.85


@pytest.mark.parametrize(
    ("flags", "words"),
    [
        (["--explainer", "gpt4"], "--explainer 'gpt4' is not one of: token-lookup, llm, all"),
        (["--query", '"Austin* ( -', "--sort", "relevance"], None),  # FTS syntax: words
    ],
)
def test_bad_explainer_one_line_exit_2(
    mixed_atlas: Path, capsys: pytest.CaptureFixture[str], flags: list[str], words: str | None
) -> None:
    code = main(["neurons", "--atlas", str(mixed_atlas), *flags])
    cap = capsys.readouterr()
    if words is None:
        assert code == 0 and cap.out.splitlines()[1].startswith(PLANTED)
        return
    assert code == 2 and words in cap.err and cap.err.count("\n") == 1


def test_web_page_shows_and_filters_the_explainer(mixed_atlas: Path) -> None:
    from streamlit.testing.v1 import AppTest

    from tests.index.test_web import panel

    at = AppTest.from_function(panel, args=(str(mixed_atlas),), default_timeout=60).run()
    at.text_input(key="expl_text").input(PLANTED_WORD).run()
    df = at.dataframe[0].value
    assert list(df["explainer"]) == ["token-lookup", f"llm ({LLM_MODEL})", f"llm ({LLM_MODEL})"]
    assert list(df["detection"])[1:] == [0.9, 0.6]
    at.selectbox(key="expl_explainer").set_value("llm").run()
    assert not at.exception and not at.error
    assert set(at.dataframe[0].value["explainer"]) == {f"llm ({LLM_MODEL})"}


def test_rows_of_a_real_llm_run(planted_lm: Any, planted_atlas: Path, tmp_path: Path) -> None:
    """``explain --explainer llm`` against the loopback OpenAI server, then the table: the
    planted neuron's LLM row, with the run's model and its scores."""
    from neuron_signatures.explain.llm_output import read_llm_explanations
    from tests.explain.fake_openai import Loopback, neuron_reader, serve
    from tests.explain.test_llm_explain import run_llm

    root = tmp_path / "A"
    shutil.copytree(planted_atlas, root)
    with serve(Loopback(default=neuron_reader(logprobs=True))) as srv:
        run_llm(planted_lm, root, srv.url)
    _, recs = read_llm_explanations(root)
    rec = next(r for r in recs if (r["layer"], r["neuron"]) == (PLANTED_LAYER, PLANTED_NEURON))
    res = search_neurons(root, IndexQuery(text=PLANTED_WORD, explainer="llm", sort="score"))
    top = res.rows[0]
    assert (top.id, top.side, top.explainer, top.explainer_model) == (
        PLANTED, "positive", "llm", "fake",
    )  # fmt: skip
    (side,) = rec["sides"]
    assert top.explanation == side["explanation"]
    assert top.score == side["scores"]["top_and_random"]
    det = (side.get("classifiers") or {}).get("detection")
    assert top.detection == (det["balanced_accuracy"] if det else None)
    assert res.info.explainers == ("llm",)
