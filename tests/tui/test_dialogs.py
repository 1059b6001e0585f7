"""The go-to dialog shows its whole hint and error (wrapped, never clipped); ``e`` in the run-only
browser says why it shows nothing."""

from __future__ import annotations

import pytest
from textual.widgets import Input, Label

from neuron_signatures.errors import BadArgumentError
from neuron_signatures.store import open_run
from neuron_signatures.tui import BrowserApp, BrowserState
from neuron_signatures.tui.screens import GoToDialog

from .conftest import SynthRun

pytestmark = pytest.mark.anyio

HINT = (
    "neuron 0..9215 of layer 17, or any neuron as L17/N1152 or 17:1152 (atlas layers 0..25, "
    "every one of them captured)"
)
ERROR = (
    "'L17/N99999' is out of range: neuron 99999 of layer 17 does not exist; type 0..9215, "
    "L17/N1152 or 17:1152, or Escape to close this dialog"
)


def _refuse(text: str) -> int:
    raise BadArgumentError(ERROR)


def shown_text(label: Label) -> str:
    """What the label puts on screen, its lines joined by spaces (wrapping breaks at spaces)."""
    lines = [label.render_line(y).text.strip() for y in range(label.size.height)]
    return " ".join(line for line in lines if line)


def assert_whole(dialog: GoToDialog, selector: str, text: str) -> None:
    label = dialog.query_one(selector, Label)
    box = dialog.query_one(".dialog").content_region
    assert label.region.x >= box.x and label.region.right <= box.right, (label.region, box)
    assert label.region.bottom <= box.bottom, (label.region, box)
    assert shown_text(label) == text


@pytest.mark.parametrize("size", [(100, 30), (60, 30)])
async def test_goto_dialog_wraps_its_hint_and_error(synth_run: SynthRun, size: tuple) -> None:
    """Before the fix the labels were one line as wide as their text, cut at the border."""
    app = BrowserApp(BrowserState(open_run(synth_run.path)))
    async with app.run_test(size=size) as pilot:
        app.push_screen(GoToDialog("Go to neuron", HINT, _refuse))
        await pilot.pause()
        dialog = app.screen
        assert isinstance(dialog, GoToDialog)
        assert_whole(dialog, ".dialog-hint", HINT)
        dialog.query_one(Input).value = "L17/N99999"
        await pilot.press("enter")
        await pilot.pause()
        assert app.screen is dialog and dialog.error == ERROR
        assert_whole(dialog, "#dialog-error", ERROR)
        assert_whole(dialog, ".dialog-hint", HINT)  # the hint stays whole under the error


async def test_e_without_an_atlas_says_why(synth_run: SynthRun) -> None:
    """Before the fix ``e`` had no binding in the run-only browser: nothing happened."""
    app = BrowserApp(BrowserState(open_run(synth_run.path)))
    async with app.run_test(size=(120, 40)) as pilot:
        screen = app.screen
        await pilot.press("e")
        await pilot.pause()
        assert app.screen is screen
        messages = [n.message for n in app._notifications]
        assert any("no atlas is open" in m and "--atlas" in m for m in messages), messages
