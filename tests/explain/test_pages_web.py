"""Explanations on the web pages through ``AppTest``: the neuron page's panel (scores, floors,
the simulated row equal to the simulator's output, the real row recomputed on demand) and the
per-layer score distribution."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from neuron_signatures.explain import read_tables, simulate
from neuron_signatures.explain.records import layer_scores, neuron_explanation
from tests.explain.conftest import PLANTED_LAYER, PLANTED_NEURON, PLANTED_WORD
from tests.explain.test_pages import llm_copy

TIMEOUT = 60


def page(atlas: str, layer: int, neuron: int) -> None:
    from neuron_signatures.atlas import open_atlas
    from neuron_signatures.web.atlasview import explanation_panel
    from neuron_signatures.web.heatmap import HeatmapConfig

    a = open_atlas(atlas)
    explanation_panel(a, a.neuron(layer, neuron), HeatmapConfig())


def search(atlas: str) -> None:
    from neuron_signatures.atlas import open_atlas
    from neuron_signatures.web.explainsearch import explanations_panel

    explanations_panel(open_atlas(atlas))


def start(atlas: Path, layer: int = PLANTED_LAYER, neuron: int = PLANTED_NEURON) -> AppTest:
    at = AppTest.from_function(page, args=(str(atlas), layer, neuron), default_timeout=TIMEOUT)
    return at.run()


def row_values(html: str, cls: str) -> np.ndarray:
    """The tooltip values of one row (``activation=+x`` or ``n/a``)."""
    part = html.split(f'<div class="{cls}">', 1)[1].split('<div class="nse-', 1)[0]
    vals = re.findall(r"activation=([^\"]+)\"", part)
    return np.array([np.nan if v == "n/a" else float(v) for v in vals])


def test_panel_shows_explanation_and_scores(explained: Path) -> None:
    at = start(explained)
    assert not at.exception, [e.value for e in at.exception]
    expl = neuron_explanation(explained, PLANTED_LAYER, PLANTED_NEURON)
    assert expl is not None
    assert any(PLANTED_WORD in t.value for t in at.text)
    pos = expl.side("positive")
    assert pos is not None
    metrics = {m.label: m for m in at.metric}
    want = pos["scores"]["top_and_random"]
    assert metrics["top-and-random"].value == f"{want:+.3f}"
    assert metrics["top-and-random"].delta == f"floor {pos['floor']['top_and_random']:+.3f}"
    assert "token-lookup" in at.caption[0].value


def test_simulated_row_equals_simulator(explained: Path) -> None:
    """Held-out example: stored real row and simulated row; random window: simulated only."""
    at = start(explained)
    if at.radio:  # two sides: show the positive one
        at.radio(key="expl_row_side").set_value("positive").run()
    tables = read_tables(explained, PLANTED_LAYER)
    box = at.selectbox(key="expl_window")
    labels = list(box.options)  # AppTest lists the formatted labels
    first_random = next(i for i, lab in enumerate(labels) if lab.startswith("random"))
    assert labels[0].startswith("held-out top example")
    for i in (0, first_random):
        at.selectbox(key="expl_window").set_value(i).run()
        assert not at.exception
        html = "\n".join(h.value for h in at.html)
        ids = np.array([int(t) for t in re.findall(r"token_id=(-?\d+)", html.split("nse-sim")[1])])
        want = simulate(tables["positive"], ids)[PLANTED_NEURON]
        np.testing.assert_allclose(row_values(html, "nse-sim"), want, atol=5e-7)
        real = row_values(html, "nse-real")
        if i == 0:
            assert np.isfinite(real[1:]).all() and real.max() > 0
        else:
            assert np.isnan(real).all() and at.button(key="expl_real")


def test_real_row_recomputed_on_demand(explained: Path, planted_lm: Any, monkeypatch: Any) -> None:
    """The button reruns the score-time forward on the window: on a held-out top example's window
    it gives back the atlas's stored activations."""
    from neuron_signatures.web import atlasview

    monkeypatch.setattr(atlasview, "get_atlas_model", lambda atlas: planted_lm)
    from neuron_signatures.atlas import open_atlas
    from neuron_signatures.explain.records import heldout_examples, real_window_row

    rec = open_atlas(explained).neuron(PLANTED_LAYER, PLANTED_NEURON)
    pos = neuron_explanation(explained, PLANTED_LAYER, PLANTED_NEURON).side("positive")  # type: ignore[union-attr]
    ex = heldout_examples(rec, pos)[0]
    row = real_window_row(explained, planted_lm, PLANTED_LAYER, PLANTED_NEURON, ex.window)
    np.testing.assert_allclose(row[1:], np.asarray(ex.acts)[1 : len(row)], rtol=1e-4, atol=1e-4)
    at = start(explained)
    if at.radio:
        at.radio(key="expl_row_side").set_value("positive").run()
    box = at.selectbox(key="expl_window")
    i = next(j for j, lab in enumerate(box.options) if lab.startswith("random"))
    at.selectbox(key="expl_window").set_value(i).run()
    at.button(key="expl_real").click().run()
    assert not at.exception, [e.value for e in at.exception]
    html = "\n".join(h.value for h in at.html)
    assert np.isfinite(row_values(html, "nse-real")[1:]).all()


def test_no_explanations_no_panel(planted_atlas: Path) -> None:
    at = start(planted_atlas)
    assert not at.exception and not at.markdown and not at.html


def test_score_distribution(explained: Path) -> None:
    at = AppTest.from_function(search, args=(str(explained),), default_timeout=TIMEOUT).run()
    assert not at.exception, [e.value for e in at.exception]
    table = at.dataframe[-1].value  # after the search results
    rows = layer_scores(explained)
    assert list(table["layer"]) == [r.layer for r in rows]
    np.testing.assert_allclose(table["median"], [r.median for r in rows])
    np.testing.assert_allclose(table["floor median"], [r.floor_median for r in rows])
    assert at.get("plotly_chart")


def test_the_app_neuron_page_has_the_panel(explained: Path) -> None:
    """The atlas app's neuron page draws the panel above the examples."""
    from streamlit import config

    from neuron_signatures.web import APP_SCRIPT

    at = AppTest.from_file(str(APP_SCRIPT), default_timeout=TIMEOUT)
    at.query_params["atlas"] = str(explained)
    at.query_params["layer"] = str(PLANTED_LAYER)
    at.query_params["neuron"] = str(PLANTED_NEURON)
    before = config.get_option("server.address")
    config.set_option("server.address", "localhost")  # any folder opens
    try:
        at.run()
    finally:
        config.set_option("server.address", before)
    assert not at.exception and not at.error, [e.value for e in at.exception]
    assert any(m.value == "#### Explanations" for m in at.markdown)
    assert {"top-and-random", "random-only"} <= {m.label for m in at.metric}
    assert any("nse-sim" in h.value for h in at.html)


@pytest.fixture
def with_llm(explained: Path, tmp_path: Path) -> Path:
    return llm_copy(explained, tmp_path)


def test_llm_explanations_on_the_page(with_llm: Path) -> None:
    at = start(with_llm)
    assert not at.exception, [e.value for e in at.exception]
    assert any(c.value.startswith("explanations-llm: explainer llm") for c in at.caption)
    assert any(t.value == "llm says positive" for t in at.text)
    assert [m.label for m in at.metric].count("top-and-random") >= 2  # offline and LLM
    at = start(with_llm, PLANTED_LAYER, 0)
    assert "HTTP 500 from server" in at.warning[0].value


def test_llm_detection_and_fuzzing_on_the_page(with_llm: Path) -> None:
    """An LLM side with classifier scores (record version 2): a metric per scorer with its
    balanced accuracy and floor; AUC, or why it is missing, in the help."""
    import json

    from neuron_signatures.explain.output import layer_path
    from neuron_signatures.explain.records import LLM_FOLDER

    path = layer_path(with_llm / LLM_FOLDER, PLANTED_LAYER)
    recs = [json.loads(x) for x in path.read_text().splitlines()]
    floor = {"from_neuron": 7, "balanced_accuracy": 0.5, "auc": 0.45, "n_invalid": 0}
    common = {"n_invalid": 0, "floor": floor, "n_windows": {"activating": 4, "non_activating": 4}}
    for r in recs:
        for sd in r["sides"]:
            sd["classifiers"] = {
                "detection": {"balanced_accuracy": 0.875, "auc": 0.9375, "method": "logprobs",
                              **common},
                "fuzzing": {"balanced_accuracy": 0.75, "auc": None, "method": "parsed", **common},
            }  # fmt: skip
    path.write_text("".join(json.dumps(r) + "\n" for r in recs))
    at = start(with_llm)
    assert not at.exception, [e.value for e in at.exception]
    by = {m.label: m for m in at.metric if m.label in ("detection", "fuzzing")}
    assert by["detection"].value == "0.875" and by["fuzzing"].value == "0.750"
    assert by["detection"].delta == "floor 0.500"
    assert "AUC 0.938 (floor 0.450)" in by["detection"].proto.help
    assert "AUC unavailable" in by["fuzzing"].proto.help


def test_simulated_row_applies_the_contexts(explained: Path) -> None:
    """A neuron whose explanation has contexts: the page's simulated row is the stored table
    with its contexts (equal to the simulator), and differs from the token-only table on some
    window."""
    from neuron_signatures.explain.lookup import LookupTable
    from tests.explain.test_contexts import context_sides

    layer, n, side = next((la, n, s) for la, n, s in context_sides(explained) if s["contexts"])
    at = start(explained, layer, n)
    assert not at.exception, [e.value for e in at.exception]
    if at.radio:
        at.radio(key="expl_row_side").set_value(side["side"]).run()
    table = read_tables(explained, layer)[side["side"]]
    no_ctx = LookupTable(table.ids, table.means, table.counts)
    sign = 1.0 if side["side"] == "positive" else -1.0
    differs = 0
    for i in range(min(12, len(at.selectbox(key="expl_window").options))):
        at.selectbox(key="expl_window").set_value(i).run()
        html = "\n".join(h.value for h in at.html)
        ids = np.array([int(t) for t in re.findall(r"token_id=(-?\d+)", html.split("nse-sim")[1])])
        want = sign * simulate(table, ids)[n]
        np.testing.assert_allclose(row_values(html, "nse-sim"), want, atol=5e-7, rtol=1e-6)
        differs += not np.allclose(want, sign * simulate(no_ctx, ids)[n])
    assert differs > 0
