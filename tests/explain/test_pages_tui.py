"""The terminal atlas view shows a neuron's explanations and scores (Textual's Pilot)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from neuron_signatures.atlas import open_atlas
from neuron_signatures.explain.records import neuron_explanation, score_lines
from neuron_signatures.tui import AtlasApp, AtlasState
from neuron_signatures.tui.widgets.explanation import ExplanationPanel
from tests.explain.conftest import PLANTED_LAYER, PLANTED_NEURON, PLANTED_WORD

SIZE = (160, 42)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def app_at(path: Path, layer: int, neuron: int) -> AtlasApp:
    return AtlasApp(AtlasState(open_atlas(path), layer=layer, neuron=neuron))


async def settle(app: AtlasApp, pilot: Any) -> None:
    await pilot.pause()
    await app.workers.wait_for_complete()
    await pilot.pause()


def panel(app: AtlasApp) -> ExplanationPanel:
    return app.atlas_screen.query_one(ExplanationPanel)


@pytest.mark.anyio
async def test_view_shows_explanation_and_follows_the_neuron(explained: Path) -> None:
    expl = neuron_explanation(explained, PLANTED_LAYER, PLANTED_NEURON)
    assert expl is not None
    app = app_at(explained, PLANTED_LAYER, PLANTED_NEURON)
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        p = panel(app)
        lines = str(p.content).splitlines()
        assert p.display and p.size.height == len(lines)
        assert lines[0].startswith("positive (token-lookup): ") and PLANTED_WORD in lines[0]
        assert lines[1] == "  " + " | ".join(score_lines(expl.sides[0]))
        await pilot.press("n")  # the next neuron: its own explanation (or none)
        await settle(app, pilot)
        other = neuron_explanation(explained, PLANTED_LAYER, PLANTED_NEURON + 1)
        shown = str(panel(app).content)
        if other is None:
            assert shown.startswith("explanations: none")
        else:
            assert shown.splitlines()[0].endswith(other.sides[0]["explanation"])


@pytest.mark.anyio
async def test_hidden_without_explanations(planted_atlas: Path) -> None:
    app = app_at(planted_atlas, PLANTED_LAYER, PLANTED_NEURON)
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        assert not panel(app).display and str(panel(app).content) == ""
