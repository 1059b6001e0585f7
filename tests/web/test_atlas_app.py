"""The atlas pages through ``AppTest``: neuron page panels, navigation, URL, search, atlas + run."""

from __future__ import annotations

import base64
import json
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from neuron_signatures.atlas import NeuronAtlas, open_atlas, search_text, search_token
from neuron_signatures.atlas.store import FORMAT_VERSION as ATLAS_FORMAT_VERSION
from neuron_signatures.tokens import token_display
from neuron_signatures.web import APP_SCRIPT
from tests.web.fixtures import ATLAS_MARKUP

TIMEOUT = 60


def start(atlas: Path | str | None, **query: Any) -> AppTest:
    at = AppTest.from_file(str(APP_SCRIPT), default_timeout=TIMEOUT)
    if atlas is not None:
        at.query_params["atlas"] = str(atlas)
    for k, v in query.items():
        at.query_params[k] = str(v)
    return at.run()


def shown(at: AppTest) -> tuple[int, int]:
    """The neuron on screen, checked against the URL (which must always reflect it)."""
    assert not at.exception, [e.value for e in at.exception]
    m = re.fullmatch(r"L(\d+)/N(\d+)", at.subheader[0].value)
    assert m is not None, at.subheader[0].value
    nid = int(m.group(1)), int(m.group(2))
    assert (at.query_params["layer"], at.query_params["neuron"]) == (str(nid[0]), str(nid[1]))
    return nid


def html(at: AppTest) -> str:
    return "\n".join(h.value for h in at.html)


def plotly_array(v: Any) -> np.ndarray:
    """A plotly JSON array: a list, or numpy's bytes in base64 (``{"dtype", "bdata"}``)."""
    if isinstance(v, dict):
        return np.frombuffer(base64.b64decode(v["bdata"]), dtype=v["dtype"])
    return np.asarray(v, dtype=np.float64)


def record(web_atlas: Path, layer: int, index: int) -> NeuronAtlas:
    return open_atlas(web_atlas).neuron(layer, index)


@pytest.fixture(autouse=True)
def fresh_caches() -> Iterator[None]:
    """Each test opens its atlas (and model) itself: no cache entry crosses tests."""
    import streamlit as st

    st.cache_resource.clear()
    yield
    st.cache_resource.clear()


# -- the neuron page --
def test_header_shows_the_neuron_statistics(web_atlas: Path) -> None:
    at = start(web_atlas, layer=1, neuron=3)
    assert shown(at) == (1, 3)
    s = record(web_atlas, 1, 3).stats
    metrics = {m.label: m.value for m in at.metric}
    assert metrics == {
        "density (> 0)": f"{s.frac_positive:.2%}",
        f"density (> {s.threshold:g})": f"{s.frac_above_threshold:.2%}",
        "max": f"{s.max:.4g}",
        "mean": f"{s.mean:.4g}",
        "std": f"{s.std:.4g}",
        "tokens seen": f"{s.count:,}",
    }
    assert "tiny-gemma2 | layer 1 of 3, 64 neurons per layer" in at.caption[0].value
    assert not at.error and not at.warning


def test_histogram_is_the_atlas_histogram(web_atlas: Path) -> None:
    at = start(web_atlas, layer=2, neuron=10)
    rec = record(web_atlas, 2, 10)
    chart = next(c for c in at.get("plotly_chart") if c.key == "atlas_hist")
    spec = json.loads(chart.proto.spec)
    x, y = (plotly_array(spec["data"][0][k]) for k in "xy")
    counts = np.asarray(rec.histogram_counts)
    nz = np.flatnonzero(counts)
    assert x.tolist() == list(range(nz[0], nz[-1] + 1))
    assert np.nan_to_num(y).tolist() == counts[nz[0] : nz[-1] + 1].tolist()
    assert np.nansum(y) == rec.stats.count
    assert spec["layout"]["yaxis"]["type"] == "log"
    assert "half-octave bins" in spec["layout"]["xaxis"]["title"]["text"]


def test_top_and_bottom_logits(web_atlas: Path) -> None:
    at = start(web_atlas, layer=0, neuron=7)
    rec = record(web_atlas, 0, 7)
    tables = at.dataframe  # the only tables of the page
    pos, neg = (d.value for d in tables)
    assert pos["token_full"].tolist() == [token_display(w.token) for w in rec.write_top]
    for t in tables:  # the values first and pinned: never pushed out of view by a long token
        assert list(t.proto.column_order) == ["score", "token"]
        assert json.loads(t.proto.columns)["score"]["pinned"] is True
    assert pos["score"].tolist() == pytest.approx([w.score for w in rec.write_top])
    assert neg["token_id"].tolist() == [w.token_id for w in rec.write_bottom]
    assert len(pos) == len(neg) == 5  # the atlas's write_scores_k


def test_examples_mark_their_token_and_escape(web_atlas: Path) -> None:
    at = start(web_atlas, layer=1, neuron=3)
    at.number_input(key="atlas_ctx").set_value(2).run()  # 5 of 12 tokens: every row has more
    rec = record(web_atlas, 1, 3)
    top, bottom = (h.value for h in at.html if "nsa-examples" in h.value)
    assert top.count('<details class="nsa-ex">') == len(rec.top) == 4
    assert bottom.count('<details class="nsa-ex">') == len(rec.bottom) == 4
    # the outlined cell, in the context row and again in the whole window, is the example's own
    # token; its tooltip gives the value
    for block, examples in ((top, rec.top), (bottom, rec.bottom)):
        marked = re.findall(r'nsh-max" data-ctx="(\d+)" title="[^"]*activation=([-+0-9.]+)"', block)
        assert (
            marked[::2]
            == marked[1::2]
            == [(str(e.position), f"{e.acts[e.position]:+.6f}") for e in examples]
        )
        assert len(re.findall(r"<summary>.*?</summary>", block)) == len(examples)
    assert f"#1 | {rec.top[0].value:+.4g} on" in top
    body = html(at)
    assert "<script>" not in body
    every = [t for e in rec.top + rec.bottom for t in e.tokens]
    every += [t for iv in rec.intervals for e in iv.samples for t in e.tokens]
    assert ("&lt;script&gt;Illinois" in body) == (ATLAS_MARKUP[1] in every)


def test_interval_samples_are_grouped_and_labelled(web_atlas: Path) -> None:
    at = start(web_atlas, layer=1, neuron=3)
    rec = record(web_atlas, 1, 3)
    block = next(h.value for h in at.html if "nsa-intervals" in h.value)
    labels = re.findall(r'class="nsa-interval">([^<]*)<', block)
    assert labels == [iv.label for iv in reversed(rec.intervals)]
    assert all(re.fullmatch(r"interval \S+–\S+ contains [0-9.]+% of tokens", s) for s in labels)
    n_samples = sum(len(iv.samples) for iv in rec.intervals)
    assert block.count('class="nsa-label"') == n_samples > 0
    # only the sampled token carries a value; it is the outlined one
    first = rec.intervals[-1].samples[0]
    assert f'nsh-max" data-ctx="{first.position}"' in block
    assert f"activation={first.value:+.6f}" in block and "activation=n/a" in block


# -- navigation and the URL --
def test_prev_next_cross_layers_and_the_url_follows(web_atlas: Path) -> None:
    at = start(web_atlas, layer=0, neuron=63)
    assert shown(at) == (0, 63)
    at.button(key="atlas_next").click().run()
    assert shown(at) == (1, 0)
    at.button(key="atlas_prev").click().run()
    at.button(key="atlas_prev").click().run()
    assert shown(at) == (0, 62)
    at.selectbox(key="atlas_layer").set_value(2).run()
    at.number_input(key="atlas_neuron").set_value(63).run()
    assert shown(at) == (2, 63)
    at.button(key="atlas_next").click().run()
    assert shown(at) == (2, 63)  # clamped at the last neuron


def test_go_to_box(web_atlas: Path) -> None:
    at = start(web_atlas)
    assert shown(at) == (0, 0)
    at.text_input(key="atlas_goto").input("L2/N17").run()
    assert shown(at) == (2, 17)
    at.text_input(key="atlas_goto").input("1:5").run()
    assert shown(at) == (1, 5)
    at.text_input(key="atlas_goto").input("L7/N1").run()
    assert shown(at) == (1, 5)
    assert "layer 7 is out of range" in at.sidebar.error[0].value
    at.text_input(key="atlas_goto").input("nonsense").run()
    assert "is not a neuron id" in at.sidebar.error[0].value


def test_random_neuron_is_reflected_in_the_url(
    web_atlas: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import random

    at = start(web_atlas)
    seen = set()
    for _ in range(4):
        at.button(key="atlas_random").click().run()
        layer, neuron = shown(at)  # checks the URL too
        assert layer in (0, 1, 2) and 0 <= neuron < 64
        seen.add((layer, neuron))
    assert len(seen) > 1
    monkeypatch.setattr(random, "randrange", lambda n: n - 1)
    monkeypatch.setattr(random, "choice", lambda xs: xs[-1])
    at.button(key="atlas_random").click().run()
    assert shown(at) == (2, 63)


def test_url_picks_the_neuron(web_atlas: Path) -> None:
    assert shown(start(web_atlas, layer=2, neuron=40)) == (2, 40)
    assert shown(start(web_atlas, neuron="L1/N9")) == (1, 9)
    at = start(web_atlas, layer=5, neuron=1)
    assert "URL neuron '5:1': layer 5 is out of range" in at.sidebar.error[0].value
    assert shown(at) == (0, 0)


def test_atlas_flag_of_the_script(web_atlas: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    # AppTest runs the script in this process: its arguments are sys.argv
    monkeypatch.setattr(sys, "argv", ["app.py", "--atlas", str(web_atlas)])
    at = start(None)
    assert at.text_input(key="atlas_dir").value == str(web_atlas)
    assert shown(at) == (0, 0)


# -- search --
def test_search_by_text(web_atlas: Path, atlas_lm: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from neuron_signatures.atlas import search

    loads = []
    monkeypatch.setattr(search, "load_atlas_model", lambda atlas: loads.append(1) or atlas_lm)
    at = start(web_atlas, layer=0, neuron=0)
    at.radio(key="atlas_page").set_value("Search by text").run()
    text = "The capital of Texas is Austin"
    at.text_area(key="atlas_text").input(text)
    at.button(key="atlas_text_go").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    want = search_text(open_atlas(web_atlas), text, top_n=10, lm=atlas_lm)
    tables = {d.key: d.value for d in at.dataframe}
    overall = tables["atlas_text_overall"]
    assert overall["neuron"].tolist() == [f"L{h.layer}/N{h.index}" for h in want.overall]
    assert overall["value"].tolist() == pytest.approx([h.value for h in want.overall])
    h0 = want.overall[0]
    link = overall["page"].iloc[0]
    assert link.startswith("?atlas=") and link.endswith(f"&layer={h0.layer}&neuron={h0.index}")
    per_token = [k for k in tables if k.startswith("atlas_text_tok")]
    assert len(per_token) == len(want.tokens) - 1  # BOS is not searched
    first = tables["atlas_text_tok1"]
    assert first["neuron"].tolist() == [f"L{h.layer}/N{h.index}" for h in want.per_token[1]]
    # rank by fraction of max; the model is loaded once
    at.selectbox(key="atlas_rank_by").set_value("frac_of_max")
    at.button(key="atlas_text_go").click().run()
    want = search_text(open_atlas(web_atlas), text, top_n=10, lm=atlas_lm, rank_by="frac_of_max")
    overall = next(d.value for d in at.dataframe if d.key == "atlas_text_overall")
    assert overall["neuron"].tolist() == [f"L{h.layer}/N{h.index}" for h in want.overall]
    assert len(loads) == 1
    # a click on a result row opens that neuron's page
    pick_row(at, "atlas_text_overall", 2)
    h2 = want.overall[2]
    assert at.radio(key="atlas_page").value == "Neuron" and shown(at) == (h2.layer, h2.index)


def pick_row(at: AppTest, key: str, row: int) -> None:
    """Send a dataframe row selection, as a click in the browser would (AppTest has no API for
    it: the widget state is appended to the next run's, through AppTest internals)."""
    from streamlit.proto.WidgetStates_pb2 import WidgetState

    frame = next(d for d in at.dataframe if d.key == key)
    event = {"selection": {"rows": [row], "columns": [], "cells": []}}
    states = at._tree.get_widget_states()
    states.widgets.append(WidgetState(id=frame.proto.id, string_value=json.dumps(event)))
    at._run(states)


def test_search_by_token(web_atlas: Path) -> None:
    at = start(web_atlas)
    at.radio(key="atlas_page").set_value("Search by token").run()
    at.text_input(key="atlas_token").input("Texas")
    at.button(key="atlas_token_go").click().run()
    assert not at.exception and not at.error
    want = search_token(open_atlas(web_atlas), "Texas", top_n=50)
    table = next(d.value for d in at.dataframe if d.key == "atlas_token_hits")
    assert table["neuron"].tolist() == [f"L{h.layer}/N{h.index}" for h in want.hits]
    assert table["count"].tolist() == [h.count for h in want.hits]
    assert any("token id" in c.value for c in at.caption)
    at.text_input(key="atlas_token").input("#5")  # a token id
    at.button(key="atlas_token_go").click().run()
    assert any("→ token id 5" in c.value for c in at.caption)
    at.text_input(key="atlas_token").input("Nowhere")
    at.button(key="atlas_token_go").click().run()
    assert "is not in the vocabulary" in at.error[0].value
    at.text_input(key="atlas_token").input("Texas")
    at.button(key="atlas_token_go").click().run()
    pick_row(at, "atlas_token_hits", 0)
    assert shown(at) == (want.hits[0].layer, want.hits[0].index)


# -- with a run, and errors --
def test_atlas_with_a_run_adds_the_probe_panels(web_atlas: Path, web_run: Path) -> None:
    at = start(web_atlas, run_dir=web_run, layer=1, neuron=3)
    assert shown(at) == (1, 3)
    body = html(at) + " ".join(c.value for c in at.caption)
    assert "Texas detector" in body  # the signature
    assert "influence rank #1" in body and "causal check: real delta +0.48" in body
    assert "Austin" in body  # the write scores of the influence file
    assert any("Stacked heatmap" in m.value for m in at.markdown)
    assert any("Probe run" in m.value for m in at.markdown)
    at.selectbox(key="atlas_layer").set_value(2).run()
    assert shown(at) == (2, 3)
    assert any("Layer 2 was not captured in this run" in i.value for i in at.info)


@pytest.mark.parametrize(
    ("kind", "message"),
    [
        ("missing", "is not an atlas (no atlas.json)"),
        ("run", "is not an atlas (no atlas.json)"),
        ("incomplete", "is not finished"),
        ("bad_json", "is unreadable"),
        ("future", f"is not a version-{ATLAS_FORMAT_VERSION} atlas"),
    ],
)
def test_bad_atlas_folders_show_a_message(
    tmp_path: Path, web_atlas: Path, web_run: Path, kind: str, message: str
) -> None:
    folder = tmp_path / kind
    if kind == "run":
        folder = web_run
    elif kind != "missing":
        shutil.copytree(web_atlas, folder)
        m = json.loads((folder / "atlas.json").read_text())
        if kind == "bad_json":
            (folder / "atlas.json").write_text("{")
        else:
            m.update({"incomplete": {"complete": False}, "future": {"format_version": 9}}[kind])
            (folder / "atlas.json").write_text(json.dumps(m))
    at = start(folder)
    assert not at.exception
    errors = [e.value for e in at.error]
    assert errors and errors[0].startswith("Cannot open the atlas") and message in errors[0]


def test_exposed_app_opens_atlases_under_the_runs_root_only(
    web_atlas: Path, server_address: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    server_address("0.0.0.0")
    monkeypatch.chdir(tmp_path)  # the default --runs_root: the current folder
    at = start(web_atlas)
    assert "outside the runs root" in at.error[0].value and not at.subheader
    inside = tmp_path / "atlas"
    shutil.copytree(web_atlas, inside)
    assert shown(start(inside, layer=1, neuron=2)) == (1, 2)


def test_run_page_is_unchanged_without_an_atlas(web_run: Path) -> None:
    at = AppTest.from_file(str(APP_SCRIPT), default_timeout=TIMEOUT)
    at.query_params["run_dir"] = str(web_run)
    at.run()
    assert not at.exception
    assert at.text_input(key="atlas_dir").value == ""
    assert at.subheader[0].value == "Selected neuron: layer 1, neuron 3"


def test_bench_atlas_is_a_readable_atlas(tmp_path: Path) -> None:
    """The benchmark's synthetic atlas is in the real store format: the reader and the page
    open it (so its timings are the real read path's)."""
    from benchmarks.bench_web import make_atlas

    make_atlas(tmp_path / "A", (3, 16), files=[0, 2], n_win=40, vocab=300)
    atlas = open_atlas(tmp_path / "A")
    rec = atlas.neuron(2, 5)
    assert sum(rec.histogram_counts) == rec.stats.count == 40 * 63
    assert [e.value for e in rec.top] == sorted((e.value for e in rec.top), reverse=True)
    assert all(e.acts[e.position] == pytest.approx(e.value, rel=1e-3) for e in rec.top)
    assert rec.intervals and len(rec.write_top) == 10
    assert rec.stats.min <= rec.stats.mean <= rec.stats.max
    at = start(tmp_path / "A", layer=2, neuron=5)
    assert shown(at) == (2, 5) and not at.error
    at.selectbox(key="atlas_layer").set_value(1).run()  # listed, but no file written
    assert "layer_001.safetensors" in at.error[0].value


def test_url_names_an_atlas_opened_in_the_sidebar(web_atlas: Path, web_run: Path) -> None:
    at = AppTest.from_file(str(APP_SCRIPT), default_timeout=TIMEOUT)
    at.query_params["run_dir"] = str(web_run)
    at.run()
    assert "atlas" not in at.query_params
    at.text_input(key="atlas_dir").input(str(web_atlas)).run()
    assert shown(at) == (1, 3)  # the run's neuron carries over (shared layer / neuron keys)
    assert at.query_params["atlas"] == str(web_atlas)
    at.text_input(key="atlas_dir").input("").run()  # closed: back to the run page
    assert "atlas" not in at.query_params
    assert at.subheader[0].value == "Selected neuron: layer 1, neuron 3"


def test_probe_run_panel_on_every_neuron_of_a_demo_shaped_influence_file(
    web_atlas: Path, tmp_path: Path
) -> None:
    """The atlas page's probe-run panel on every atlas neuron, with a run whose influence records
    past ``--verify_top`` hold ``real_delta: None`` (ranked: record and, when it ran, the causal
    check; unranked: "not in any influence file")."""
    from tests.web.fixtures import demo_causal_line, demo_influence_order, make_demo_influence_run

    run = make_demo_influence_run(tmp_path / "run", "tiny-gemma2")
    rank = {nid: r + 1 for r, nid in enumerate(demo_influence_order())}
    atlas = open_atlas(web_atlas)
    at = start(web_atlas, run_dir=run, layer=atlas.layers[0], neuron=0)
    seen = {"ranked": 0, "verified": 0, "unranked": 0}
    for layer in atlas.layers:
        at.selectbox(key="atlas_layer").set_value(layer)
        for n in range(atlas.d_mlp):
            at.number_input(key="atlas_neuron").set_value(n).run()
            assert shown(at) == (layer, n)
            captions = [c.value for c in at.caption]
            causal = [c for c in captions if "causal check" in c]
            r = rank.get((layer, n))
            if r is None:
                seen["unranked"] += 1
                assert "not in any influence file of the run" in captions and not causal
                continue
            seen["ranked"] += 1
            assert any(c.startswith(f"influence rank #{r}: influence ") for c in captions)
            want = demo_causal_line(r)
            seen["verified"] += want is not None
            assert causal == ([want] if want else []), ((layer, n), causal)
    assert all(seen.values()), seen


def test_logit_values_stay_in_view_next_to_long_tokens() -> None:
    """The score column comes first and is pinned; tokens are cut to ``LOGIT_TOKEN_CHARS``."""
    from neuron_signatures.atlas import WriteScore
    from neuron_signatures.web.atlasview import LOGIT_COLUMNS, LOGIT_TOKEN_CHARS, logits_table

    long = "\u2581" + "Supercalifragilistic" * 4
    table = logits_table([WriteScore(long, 7, 1.25), WriteScore("\u2581a", 8, 0.5)])
    assert LOGIT_COLUMNS[0] == "score" and table.columns[0] == "score"
    cut = table["token"][0]
    assert len(cut) == LOGIT_TOKEN_CHARS and cut.endswith("…")
    assert cut[:-1] == token_display(long)[: LOGIT_TOKEN_CHARS - 1]
    assert table["token"][1] == token_display("\u2581a")  # short tokens are whole
    assert table["token_full"].tolist() == [token_display(long), token_display("\u2581a")]
