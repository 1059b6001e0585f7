"""The neuron card names the signatures file a class came from, lets the user pick the file, and
shows whether the write scores agree with a Say X reading (old files without it still load)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from neuron_signatures.web.heatmap import escape
from tests.web.fixtures import write_json
from tests.web.test_app import html, shown, start

NEWER = [
    {"layer": 1, "neuron": 3, "class": "say_x", "name": "Say (<Austin>)",
     "say_x_token": "▁<Austin>", "say_x_write_rank": 3, "say_x_write_agrees": True},
    {"layer": 0, "neuron": 5, "class": "say_x", "name": "Say (Paris)", "say_x_token": "▁Paris",
     "say_x_write_rank": 41233, "say_x_write_agrees": False},
    {"layer": 1, "neuron": 7, "class": "say_x", "name": "Say (Rome)", "say_x_token": "▁Rome"},
]  # fmt: skip


@pytest.fixture
def two_files(web_run: Path, tmp_path: Path) -> Path:
    """``signatures_demo.json`` (old format, Texas detector) and a newer ``signatures_say.json``."""
    run = tmp_path / "run"
    shutil.copytree(web_run, run)
    newer = run / "analysis" / "signatures_say.json"
    write_json(newer, {"format_version": 1, "kind": "signatures", "neurons": NEWER})
    old = run / "analysis" / "signatures_demo.json"
    t = newer.stat().st_mtime - 60
    os.utime(old, (t, t))
    return run


def card(at: AppTest) -> str:
    return "\n".join(h.value for h in at.html if "nsh-signature" in h.value)


def goto(at: AppTest, text: str) -> None:
    at.text_input(key="goto_text").input(text).run()


def test_card_names_the_file_and_the_say_x_check(two_files: Path) -> None:
    at = start(two_files)
    box = at.selectbox(key="sig_file")
    assert box.options == ["all 2 files (newest wins)", "signatures_say.json",
                           "signatures_demo.json"]  # fmt: skip
    assert shown(at) == (1, 3)
    text = card(at)
    assert "say_x - Say (&lt;Austin&gt;)" in text and "from signatures_say.json" in text
    assert "Say &#x27; &lt;Austin&gt;&#x27; · write scores: promoted #3 ✓" in text
    goto(at, "0:5")
    assert "Say &#x27; Paris&#x27; · write scores: rank 41,233 ✗" in card(at)
    goto(at, "1:7")
    assert "write scores: not checked" in card(at)  # fields missing in the record


def test_picking_a_file_shows_its_class(two_files: Path) -> None:
    at = start(two_files)
    at.selectbox(key="sig_file").set_value("signatures_demo.json").run()
    assert shown(at) == (1, 3)
    text = card(at)
    assert "entity - Texas detector" in text and "from signatures_demo.json" in text
    assert "write scores:" not in text  # the old format has no Say X fields
    goto(at, "0:5")
    assert card(at) == ""  # not in that file
    at.selectbox(key="sig_file").set_value("signatures_say.json").run()
    assert "Say (Paris)" in card(at)


def test_one_old_file_still_works(web_run: Path) -> None:
    at = start(web_run)
    assert at.selectbox(key="sig_file").options == ["all 1 file (newest wins)",
                                                    "signatures_demo.json"]  # fmt: skip
    assert "Texas detector" in html(at) and "write scores:" not in card(at)


# -- the corpus check of the name ------------------------------------------------------------
CHECKED = {"layer": 1, "neuron": 3, "class": "relationship", "name": "(Springfield) related",
           "relation_token": "Springfield", "corpus_supported": False,
           "corpus_reason": "98% of corpus tokens positive (dense: > 90%); 'Springfield' "
                            "does not occur in the atlas's corpus",
           "corpus_peak_share": 0.0, "corpus_density": 0.98, "corpus_write_rank": None,
           "corpus_token_count": 0}  # fmt: skip


def test_card_shows_the_stored_corpus_check(web_run: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    shutil.copytree(web_run, run)
    write_json(run / "analysis" / "signatures_checked.json",
               {"format_version": 2, "kind": "signatures", "neurons": [CHECKED]})  # fmt: skip
    at = start(run)
    assert shown(at) == (1, 3)
    assert (
        "corpus check: ✗ not supported: 98% of corpus tokens positive (dense: &gt; 90%); "
        "&#x27;Springfield&#x27; does not occur in the atlas&#x27;s corpus"
    ) in card(at)
    at.selectbox(key="sig_file").set_value("signatures_demo.json").run()
    assert "Texas detector" in card(at) and "corpus check" not in card(at)  # version 1: none


def _run_of(folder: Path, model: str, n_layers: int, d_mlp: int) -> Path:
    """A two-prompt run that claims to be of ``model`` (``n_layers x d_mlp``)."""
    from neuron_signatures.store.build import write_run

    toks = ["<bos>", "The", "▁capital", "▁is"]
    acts = [np.zeros((n_layers, len(toks), d_mlp), np.float32) for _ in range(2)]
    prompts = [{"probe_id": f"p{i}", "text": "The capital is", "tokens": toks,
                "token_ids": [2, 10, 11, 12]} for i in range(2)]  # fmt: skip
    write_run(folder, prompts, acts, model_name=model)
    (folder / "analysis").mkdir()
    return folder


def test_atlas_beside_the_run_checks_the_name_now(web_atlas: Path, tmp_path: Path) -> None:
    from neuron_signatures.atlas import open_atlas
    from neuron_signatures.signatures.corpus_check import check_record, token_key

    atlas = open_atlas(web_atlas)
    layer = atlas.layers[0]
    rec = atlas.neuron(layer, 0)
    peaks = [token_key(e.tokens[e.position]) for e in rec.top]
    x = max(set(peaks), key=peaks.count)  # the neuron's most frequent top-example peak
    named = {"layer": layer, "neuron": 0, "class": "semantic", "name": x, "semantic_token": x}
    run = _run_of(tmp_path / "run", atlas.model_name, atlas.n_layers, atlas.d_mlp)
    write_json(run / "analysis" / "signatures_x.json",
               {"format_version": 2, "kind": "signatures", "neurons": [named]})  # fmt: skip
    want = check_record(atlas, named)
    assert want is not None and want.peak_hits == peaks.count(x) > 0
    at = at_atlas(web_atlas, run, layer, 0)
    assert escape(want.describe()) in card(at)
    assert f"peaks {peaks.count(x)} of {len(rec.top)} top examples" in card(at)
    # the same run claiming another model: the check is not made against this atlas
    other = _run_of(tmp_path / "other", "another-model", atlas.n_layers, atlas.d_mlp)
    write_json(other / "analysis" / "signatures_x.json",
               {"format_version": 2, "kind": "signatures", "neurons": [named]})  # fmt: skip
    at = at_atlas(web_atlas, other, layer, 0)
    assert ("corpus check: ? untested: the open atlas is of another model than the run (model "
            f"another-model (run) vs {atlas.model_name} (atlas))") in card(at)  # fmt: skip


def at_atlas(atlas: Path, run: Path, layer: int, neuron: int) -> AppTest:
    import streamlit as st

    from neuron_signatures.web import APP_SCRIPT

    st.cache_resource.clear()
    at = AppTest.from_file(str(APP_SCRIPT), default_timeout=60)
    for k, v in {"atlas": atlas, "run_dir": run, "layer": layer, "neuron": neuron}.items():
        at.query_params[k] = str(v)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at
