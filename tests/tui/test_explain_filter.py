"""``f`` in the atlas view: find neurons by explanation, open one; bad input is one line in the
dialog (Pilot, on the planted detector's atlas with hand-made offline and LLM explanations)."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest

from neuron_signatures.atlas import open_atlas
from neuron_signatures.index import IndexQuery, search_neurons
from neuron_signatures.tui import AtlasApp, AtlasState
from neuron_signatures.tui.screens import AtlasScreen, ExplainFilterDialog
from neuron_signatures.tui.widgets import AtlasHeader
from tests.explain.conftest import (
    PLANTED_LAYER,
    PLANTED_NEURON,
    PLANTED_WORD,
    explain_corpus,
    planted_atlas,
    planted_lm,
)
from tests.index.conftest import mixed_atlas

__all__ = ["explain_corpus", "mixed_atlas", "planted_atlas", "planted_lm"]

SIZE = (140, 42)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def app_on(path: Path) -> AtlasApp:
    state = AtlasState(open_atlas(path), layer=open_atlas(path).layers[-1], neuron=1)
    state.record()
    return AtlasApp(state)


async def search(app: AtlasApp, pilot: Any, words: str, min_score: str = "") -> Any:
    """Open the dialog (once), type ``words`` and ``min_score``, search, wait for the rows."""
    if not isinstance(app.screen, ExplainFilterDialog):
        await pilot.press("f")
        await pilot.pause()
    dialog = app.screen
    assert isinstance(dialog, ExplainFilterDialog)
    dialog.query_one("#filter-query").value = words
    dialog.query_one("#filter-min").value = min_score
    dialog.query_one("#filter-query").focus()
    await pilot.press("enter")
    await pilot.pause()
    await app.workers.wait_for_complete()
    await pilot.pause()
    return dialog


@pytest.mark.anyio
async def test_finds_the_planted_detector_and_opens_its_page(mixed_atlas: Path) -> None:
    app = app_on(mixed_atlas)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        await app.workers.wait_for_complete()
        dialog = await search(app, pilot, PLANTED_WORD.lower(), "0.9")
        want = search_neurons(mixed_atlas, IndexQuery(text=PLANTED_WORD, min_score=0.9, limit=200))
        assert [(r.layer, r.neuron, r.side) for r in dialog.rows] == [
            (r.layer, r.neuron, r.side) for r in want.rows
        ]
        assert [(r.id, r.explainer) for r in dialog.rows] == [
            (f"L{PLANTED_LAYER}/N{PLANTED_NEURON}", "token-lookup"),
            (f"L{PLANTED_LAYER}/N{PLANTED_NEURON}", "llm"),
        ]
        assert "llm (fake-llm)" in str(
            dialog.query_one("#filter-rows").get_option_at_index(1).prompt
        )
        assert dialog.message.startswith(f"{len(want.rows)} rows, best score first")
        await pilot.press("down", "enter")  # into the rows, open the first
        await pilot.pause()
        await app.workers.wait_for_complete()
        await pilot.pause()
        assert isinstance(app.screen, AtlasScreen)
        assert app.atlas.key == (PLANTED_LAYER, PLANTED_NEURON)
        head = str(app.atlas_screen.query_one(AtlasHeader).content).splitlines()[0]
        assert head.startswith(f"L{PLANTED_LAYER}/N{PLANTED_NEURON} ")
        await pilot.press("f", "escape")  # Escape closes without moving
        await pilot.pause()
        assert isinstance(app.screen, AtlasScreen)
        assert app.atlas.key == (PLANTED_LAYER, PLANTED_NEURON)


@pytest.mark.anyio
async def test_bad_input_is_one_line_in_the_dialog(
    mixed_atlas: Path, planted_atlas: Path, tmp_path: Path
) -> None:
    app = app_on(mixed_atlas)
    async with app.run_test(size=SIZE) as pilot:
        cases = [
            (PLANTED_WORD, "high", "is not a number"),
            (PLANTED_WORD, "7", "out of range"),
            ('"( * - )', "", "type a word of an explanation"),
            ("zzzqqqxx", "", "no neuron's explanation holds 'zzzqqqxx'"),
            ('"Austin* ( -', "", "rows, best score first"),  # FTS syntax: plain words
        ]
        for words, min_score, says in cases:
            dialog = await search(app, pilot, words, min_score)
            assert says in dialog.message and "\n" not in dialog.message, dialog.message
            assert isinstance(app.screen, ExplainFilterDialog)
        assert dialog.rows  # the last search found the planted word
    root = tmp_path / "A"
    shutil.copytree(planted_atlas, root)
    app = app_on(root)
    async with app.run_test(size=SIZE) as pilot:
        dialog = await search(app, pilot, "capital")
        assert "has none: run `neuron-signatures explain --atlas" in dialog.message
        assert not dialog.rows and isinstance(app.screen, ExplainFilterDialog)
