"""The signature line of the ranked panel: its source file, the file switcher (``s``) and the
Say X write-score check, on hand-written ``signatures_*.json`` files (old and new format)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from textual.widgets import Input

from neuron_signatures.store import open_run
from neuron_signatures.tui import BrowserApp, BrowserState

from .conftest import SynthRun, build

pytestmark = pytest.mark.anyio

OLD = [{"layer": 2, "neuron": 17, "class": "lexical", "name": "Austin detector"}]  # no say_x_*
NEW = [
    {"layer": 2, "neuron": 17, "class": "say_x", "name": "Say (Austin)", "say_x_token": "▁Austin",
     "say_x_write_rank": 3, "say_x_write_agrees": True},
    {"layer": 1, "neuron": 5, "class": "say_x", "name": "Say (Paris)", "say_x_token": "▁Paris",
     "say_x_write_rank": 41233, "say_x_write_agrees": False},
    {"layer": 0, "neuron": 1, "class": "say_x", "name": "Say (\ufe0f)", "say_x_token": "☺\ufe0f",
     "say_x_write_rank": None, "say_x_write_agrees": None},
]  # fmt: skip


def write_sigs(folder: Path, name: str, rows: list[dict], age_s: float) -> None:
    path = folder / f"signatures_{name}.json"
    path.write_text(json.dumps({"kind": "signatures", "neurons": rows}))
    t = path.stat().st_mtime - age_s
    os.utime(path, (t, t))


@pytest.fixture(scope="module")
def signed_run(tmp_path_factory: pytest.TempPathFactory) -> SynthRun:
    run = build(tmp_path_factory.mktemp("tui") / "signed", 3)
    folder = run.path / "analysis"
    folder.mkdir()
    write_sigs(folder, "old", OLD, age_s=100)
    write_sigs(folder, "new", NEW, age_s=0)
    (folder / "signatures_new_meta.json").write_text('{"kind": "signatures_meta"}')
    return run


def signature(app: BrowserApp) -> list[str]:
    return str(app.browser.query_one("#ranked-signature").content).splitlines()


async def goto(app: BrowserApp, pilot, text: str) -> None:  # type: ignore[no-untyped-def]
    await pilot.press("g")
    app.screen.query_one(Input).value = text
    await pilot.press("enter")


async def test_signature_line_names_its_file_and_the_say_x_check(signed_run: SynthRun) -> None:
    app = BrowserApp(BrowserState(open_run(signed_run.path)))
    async with app.run_test(size=(140, 42)) as pilot:
        await goto(app, pilot, "L2/N17")
        head, name, check = signature(app)
        assert head == "signature L2 N17 · signatures_new.json (s: switch)"  # newest file wins
        assert name == "say_x: Say (Austin)"
        assert check == "Say ' Austin' · write scores: promoted #3 ✓"
        await goto(app, pilot, "1:5")
        assert signature(app)[2] == "Say ' Paris' · write scores: rank 41,233 ✗"
        await goto(app, pilot, "0:1")
        assert signature(app)[2] == "Say '☺\\ufe0f' · write scores: not checked"
        await goto(app, pilot, "3:3")
        assert signature(app) == [
            "signature L3 N3 · all files (newest wins) (s: switch)",
            "no signature",
        ]
        await pilot.press("s")  # only the newest file
        await goto(app, pilot, "2:17")
        assert signature(app)[0].startswith("signature L2 N17 · signatures_new.json")
        await pilot.press("s")  # only the older file: the old format has no Say X fields
        assert signature(app) == [
            "signature L2 N17 · signatures_old.json (s: switch)",
            "lexical: Austin detector",
        ]
        await goto(app, pilot, "1:5")
        assert signature(app)[1:] == ["no signature"]  # not in the old file
        assert signature(app)[0] == "signature L1 N5 · signatures_old.json (s: switch)"
        await pilot.press("s")  # back to all files
        assert signature(app)[2] == "Say ' Paris' · write scores: rank 41,233 ✗"
        assert any("signatures from all files" in n.message for n in app._notifications)


async def test_s_without_signatures_warns(synth_run: SynthRun) -> None:
    app = BrowserApp(BrowserState(open_run(synth_run.path)))
    async with app.run_test(size=(140, 42)) as pilot:
        await pilot.press("s")
        assert app.is_running
        assert any("no signatures_" in n.message for n in app._notifications)


# -- the corpus check of the name ------------------------------------------------------------
CHECKED = [{"layer": 2, "neuron": 17, "class": "relationship", "name": "(Springfield) related",
            "relation_token": "Springfield", "corpus_supported": False,
            "corpus_reason": "98% of corpus tokens positive (dense: > 90%); 'Springfield' does "
                             "not occur in the atlas's corpus",
            "corpus_density": 0.98, "corpus_token_count": 0}]  # fmt: skip


async def test_signature_block_shows_the_stored_corpus_check(tmp_path: Path) -> None:
    run = build(tmp_path / "run", 3)
    (run.path / "analysis").mkdir()
    write_sigs(run.path / "analysis", "checked", CHECKED, age_s=0)
    app = BrowserApp(BrowserState(open_run(run.path)))
    async with app.run_test(size=(140, 42)) as pilot:
        await goto(app, pilot, "L2/N17")
        assert signature(app)[1:] == [
            "relationship: (Springfield) related",
            "corpus check: ✗ not supported: 98% of corpus tokens positive (dense: > 90%); "
            "'Springfield' does not occur in the atlas's corpus",
        ]


@pytest.fixture(scope="module")
def tiny_atlas(tmp_path_factory: pytest.TempPathFactory, tiny_tokenizer: Any) -> Path:
    from neuron_signatures.models import wrap_hf_model
    from tests.atlas.conftest import build as build_atlas
    from tests.atlas.conftest import corpus_lines
    from tests.tiny_models import make_models

    root = tmp_path_factory.mktemp("atlas")
    corpus = root / "corpus.txt"
    corpus.write_text("\n".join(corpus_lines(12)) + "\n")
    model, _ = make_models("gemma2")
    lm = wrap_hf_model(model, tiny_tokenizer, name="tiny-gemma2", dtype="fp32")
    return Path(build_atlas(lm, root / "A", corpus, layers=[1]))


def _named_run(folder: Path, model: str, rec: dict) -> Path:
    """A run shaped like the tiny model (3 layers x 64) of ``model`` with one signature."""
    from neuron_signatures.store.build import write_run

    from .conftest import make_prompts

    prompts = make_prompts(2)
    acts = [np.zeros((3, len(p["tokens"]), 64), np.float32) for p in prompts]
    write_run(folder, prompts, acts, n_layers=3, save_dtype="fp32", model_name=model)
    (folder / "analysis").mkdir()
    write_sigs(folder / "analysis", "x", [rec], age_s=0)
    return folder


async def test_atlas_beside_the_run_checks_the_name_now(tmp_path: Path, tiny_atlas: Path) -> None:
    from neuron_signatures.atlas import open_atlas
    from neuron_signatures.signatures.corpus_check import check_record, token_key
    from neuron_signatures.tui import AtlasApp, AtlasState
    from neuron_signatures.tui.screens import LinkedBrowserScreen

    atlas = open_atlas(tiny_atlas)
    top = atlas.neuron(1, 9).top
    peaks = [token_key(e.tokens[e.position]) for e in top]
    x = max(set(peaks), key=peaks.count)
    rec = {"layer": 1, "neuron": 9, "class": "semantic", "name": x, "semantic_token": x}
    want = check_record(atlas, rec)
    assert want is not None and want.peak_hits == peaks.count(x) > 0
    for model, line in [
        ("tiny-gemma2", want.describe()),
        ("another-model", "corpus check: ? untested: the open atlas is of another model than "
                          "the run (model another-model (run) vs tiny-gemma2 (atlas))"),
    ]:  # fmt: skip
        run = _named_run(tmp_path / model, model, rec)
        app = AtlasApp(AtlasState(atlas, layer=1, neuron=9), BrowserState(open_run(run)))
        async with app.run_test(size=(140, 42)) as pilot:
            await pilot.pause()
            await pilot.press("e")
            await pilot.pause()
            assert isinstance(app.screen, LinkedBrowserScreen)
            lines = str(app.screen.query_one("#ranked-signature").content).splitlines()
            assert lines[1:] == [f"semantic: {x}", line]
