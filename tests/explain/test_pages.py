"""Explanations on the neuron pages: the per-neuron reader, the simulated row, the per-layer
scores, and the ``neuron`` command's text and ``--json``."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from neuron_signatures.atlas import open_atlas
from neuron_signatures.explain import read_explanations, read_tables, simulate
from neuron_signatures.explain.records import (
    heldout_examples,
    layer_scores,
    neuron_explanation,
    random_windows,
    simulated_row,
    window_token_ids,
)
from tests.cli_run import run_cli
from tests.explain.conftest import PLANTED_LAYER, PLANTED_NEURON, PLANTED_WORD

ID = f"L{PLANTED_LAYER}/N{PLANTED_NEURON}"


def _record(atlas: Path, layer: int, neuron: int) -> dict:
    _, recs = read_explanations(atlas)
    return next(r for r in recs if (r["layer"], r["neuron"]) == (layer, neuron))


def test_reader_equals_the_records(explained: Path) -> None:
    want = _record(explained, PLANTED_LAYER, PLANTED_NEURON)
    got = neuron_explanation(explained, PLANTED_LAYER, PLANTED_NEURON)
    assert got is not None and got.sides == want["sides"]
    assert got.explainer["name"] == "token-lookup"
    pos = got.side("positive")
    assert pos is not None and PLANTED_WORD in pos["explanation"]
    assert pos["scores"]["top_and_random"] >= 0.9


def test_reader_without_explanations(planted_atlas: Path) -> None:
    assert neuron_explanation(planted_atlas, 0, 0) is None


def test_simulated_row_equals_the_simulator(explained: Path) -> None:
    """The page's row: the lookup table on the window's tokens, on the activation scale."""
    expl = neuron_explanation(explained, PLANTED_LAYER, PLANTED_NEURON)
    assert expl is not None
    tables = read_tables(explained, PLANTED_LAYER)
    for side in expl.sides:
        for w in random_windows(explained, side)[:3]:
            ids = window_token_ids(explained, w)
            want = simulate(tables[side["side"]], ids)[PLANTED_NEURON]
            sign = 1.0 if side["side"] == "positive" else -1.0
            got = simulated_row(explained, PLANTED_LAYER, PLANTED_NEURON, side["side"], ids)
            np.testing.assert_array_equal(got, sign * want)
    # on a held-out top example the simulated row is high exactly where the planted token is
    rec = open_atlas(explained).neuron(PLANTED_LAYER, PLANTED_NEURON)
    pos = expl.side("positive")
    assert pos is not None
    held = heldout_examples(rec, pos)
    assert held and {ex.window for ex in held} == set(pos["heldout"]["example_windows"])
    ex = held[0]
    row = simulated_row(
        explained, PLANTED_LAYER, PLANTED_NEURON, "positive", np.array(ex.token_ids)
    )
    assert row[ex.position] > 0
    assert np.corrcoef(row[1:], np.asarray(ex.acts)[1:])[0, 1] > 0.9


def test_layer_scores(explained: Path) -> None:
    rows = layer_scores(explained)
    _, recs = read_explanations(explained)
    recs = list(recs)
    layer0 = next(r for r in rows if r.layer == PLANTED_LAYER and r.side == "positive")
    sc = [
        s["scores"]["top_and_random"]
        for r in recs
        if r["layer"] == PLANTED_LAYER
        for s in r["sides"]
        if s["side"] == "positive"
    ]
    v = np.array([np.nan if x is None else x for x in sc])
    assert layer0.n == len(sc)
    assert layer0.median == pytest.approx(np.nanmedian(v))
    assert layer0.share_ge_half == pytest.approx(np.mean(v[np.isfinite(v)] >= 0.5))
    assert {r.layer for r in rows} == set(read_explanations(explained)[0]["params"]["layers"])


def test_cli_text_and_json(explained: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, _ = run_cli(capsys, "neuron", "--atlas", str(explained), ID)
    assert rc == 0 and "explanations" in out and "explainer token-lookup" in out
    assert PLANTED_WORD in out.split("explanations")[-1]
    assert "top-and-random +" in out and "floor" in out and "held-out tokens" in out
    rc, out, _ = run_cli(capsys, "neuron", "--atlas", str(explained), ID, "--json")
    d = json.loads(out)
    want = _record(explained, PLANTED_LAYER, PLANTED_NEURON)
    assert rc == 0 and d["explanations"]["sides"] == want["sides"]
    assert d["explanations"]["explainer"]["name"] == "token-lookup"


def test_cli_without_explanations(planted_atlas: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, _ = run_cli(capsys, "neuron", "--atlas", str(planted_atlas), ID, "--json")
    assert rc == 0 and "explanations" not in json.loads(out)
    rc, out, _ = run_cli(capsys, "neuron", "--atlas", str(planted_atlas), ID)
    assert rc == 0 and "explainer" not in out


def test_page_reading_imports_no_torch(explained: Path) -> None:
    """The pages read a neuron's explanation, its simulated row and the layer scores without
    torch (only the real row of a random window, on demand, runs the model)."""
    import os
    import subprocess
    import sys

    code = (
        "import sys\n"
        "import numpy as np\n"
        "from neuron_signatures.explain import records as r\n"
        "import neuron_signatures.web.explainsearch, neuron_signatures.tui.widgets.explanation\n"
        f"a = {str(explained)!r}\n"
        f"e = r.neuron_explanation(a, {PLANTED_LAYER}, {PLANTED_NEURON})\n"
        "w = r.random_windows(a, e.sides[0])[0]\n"
        f"r.simulated_row(a, {PLANTED_LAYER}, {PLANTED_NEURON}, 'positive', "
        "r.window_token_ids(a, w))\n"
        "assert r.layer_scores(a)\n"
        "print('torch' in sys.modules)\n"
    )
    root = Path(__file__).resolve().parents[2]
    out = subprocess.run(
        [sys.executable, "-c", code],
        env={**os.environ, "PYTHONPATH": str(root)},
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "False"


def test_reader_finds_neurons_in_a_sparse_layer(explained: Path, tmp_path: Path) -> None:
    """Lines are found by neuron, not by line number, when some neurons have no line."""
    import shutil

    from neuron_signatures.explain.output import FOLDER, MANIFEST, layer_path

    src = _record(explained, PLANTED_LAYER, PLANTED_NEURON)
    out = tmp_path / "A" / FOLDER
    layer_path(out, PLANTED_LAYER).parent.mkdir(parents=True)
    shutil.copy(explained / FOLDER / MANIFEST, out / MANIFEST)
    present = [1, 4, 7, 20, 21]
    sides = lambda n: [{**src["sides"][0], "explanation": f"n{n}"}]  # noqa: E731
    body = "".join(json.dumps({**src, "neuron": n, "sides": sides(n)}) + "\n" for n in present)
    layer_path(out, PLANTED_LAYER).write_text(body)
    for n in range(25):
        got = neuron_explanation(tmp_path / "A", PLANTED_LAYER, n)
        assert (got is not None) == (n in present), n
        assert got is None or got.sides[0]["explanation"] == f"n{n}"


@pytest.fixture
def with_llm(explained: Path, tmp_path: Path) -> Path:
    return llm_copy(explained, tmp_path)


def llm_copy(explained: Path, tmp_path: Path) -> Path:
    """A copy of the explained atlas with an ``explanations-llm`` folder in the same layout:
    the planted neuron's sides re-labelled ``llm``, and neuron 0 holding a per-neuron error."""
    import shutil

    from neuron_signatures.explain.output import FOLDER, MANIFEST, layer_path
    from neuron_signatures.explain.records import LLM_FOLDER

    root = tmp_path / "A"
    shutil.copytree(explained, root)
    m = json.loads((root / FOLDER / MANIFEST).read_text())
    m["params"]["explainer"] = {"name": "llm", "model": "m", "best_of": 2}
    out = root / LLM_FOLDER
    layer_path(out, PLANTED_LAYER).parent.mkdir(parents=True)
    (out / MANIFEST).write_text(json.dumps(m))
    src = _record(explained, PLANTED_LAYER, PLANTED_NEURON)
    sides = [
        {**s, "explainer": "llm", "explanation": f"llm says {s['side']}"} for s in src["sides"]
    ]
    recs = [
        {"layer": PLANTED_LAYER, "neuron": 0, "sides": [], "error": "HTTP 500 from server"},
        {**src, "sides": sides},
    ]
    layer_path(out, PLANTED_LAYER).write_text("".join(json.dumps(r) + "\n" for r in recs))
    return root


def test_llm_explanations_beside_the_offline_ones(
    with_llm: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from neuron_signatures.tui.widgets.explanation import explanation_lines

    rc, out, _ = run_cli(capsys, "neuron", "--atlas", str(with_llm), ID)
    tail = out.split("explanations-llm")[-1]
    assert rc == 0 and "explainer llm (model m, best_of 2)" in tail
    assert "llm says positive" in tail and "top-and-random +" in tail
    rc, out, _ = run_cli(capsys, "neuron", "--atlas", str(with_llm), ID, "--json")
    d = json.loads(out)
    assert d["explanations"]["explainer"]["name"] == "token-lookup"
    assert d["explanations_llm"]["sides"][0]["explanation"] == "llm says positive"
    rc, out, _ = run_cli(capsys, "neuron", "--atlas", str(with_llm), f"L{PLANTED_LAYER}/N0")
    assert rc == 0 and "error: HTTP 500 from server" in out
    lines = explanation_lines(with_llm, PLANTED_LAYER, PLANTED_NEURON)
    assert lines is not None and any(x.startswith("positive (llm): llm says") for x in lines)
    err = explanation_lines(with_llm, PLANTED_LAYER, 0)
    assert err is not None and "explanations-llm: error HTTP 500 from server" in err[-1]
