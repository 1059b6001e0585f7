"""Typed input: keys typed in a burst stay in order, and neurons typed as ``L17/N1152`` or
``17:1152`` jump to any layer (go-to dialog, ``--neuron``)."""

from __future__ import annotations

import pytest
from textual import events
from textual.widgets import Input

from neuron_signatures.store import open_run
from neuron_signatures.tui import BrowserApp, BrowserState
from neuron_signatures.tui.screens import GoToDialog, PromptPicker

from .conftest import SynthRun

pytestmark = pytest.mark.anyio

SIZE = (140, 42)


def burst(app: BrowserApp, keys: list[str]) -> None:
    """Queue every key at once, as a fast typist or a busy app does (``pilot.press`` waits for
    each key to be handled before sending the next, which hides ordering bugs)."""
    for key in keys:
        app.post_message(events.Key(key, key if len(key) == 1 else None))


async def test_keys_typed_fast_after_an_error_apply_in_order(synth_run: SynthRun) -> None:
    app = BrowserApp(BrowserState(open_run(synth_run.path)))
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("g")
        dialog = app.screen
        assert isinstance(dialog, GoToDialog)
        burst(app, [*"5000", "enter", *["backspace"] * 4, "7", "7"])
        await pilot.pause(0.3)
        assert dialog.query_one(Input).value == "77"
        assert dialog.error == ""  # the error of 5000 went with the first Backspace
        burst(app, ["left", "left", "1", "end", "backspace", "9"])  # cursor keys too
        await pilot.pause(0.3)
        assert dialog.query_one(Input).value == "179"
        await pilot.press("enter")
        assert app.state.neuron == 179
        await pilot.press("slash")  # the prompt search box uses the same input
        assert isinstance(app.screen, PromptPicker)
        burst(app, [*"p0009", "backspace", "backspace", *"07"])
        await pilot.pause(0.3)
        assert app.screen.query_one(Input).value == "p0007"


@pytest.mark.parametrize("typed", ["L2/N17", "2:17", "2/17", " l2 / n17 "])
async def test_goto_neuron_accepts_every_neuron_form(synth_run: SynthRun, typed: str) -> None:
    app = BrowserApp(BrowserState(open_run(synth_run.path), layer=0, neuron=5, ctx_idx=3))
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("g")
        app.screen.query_one(Input).value = typed
        await pilot.press("enter")
        s = app.state
        assert not isinstance(app.screen, GoToDialog)
        assert (s.layer, s.neuron, s.ctx_idx) == (2, 17, 3)  # same prompt and token
        await pilot.press("g", *"12", "enter")  # a bare number stays in the current layer
        assert (s.layer, s.neuron) == (2, 12)
        await pilot.press("l", *"L1", "enter")
        assert s.layer == 1


def test_browse_neuron_flag_takes_a_layer(synth_run: SynthRun) -> None:
    from neuron_signatures.cli import build_parser
    from neuron_signatures.commands.browse import build_app
    from neuron_signatures.errors import BadArgumentError

    def state(*flags: str) -> BrowserState:
        args = build_parser().parse_args(["browse", "--run_dir", str(synth_run.path), *flags])
        return build_app(args).state

    s = state("--neuron", "L3/N200")
    assert (s.layer, s.neuron) == (3, 200)
    s = state("--neuron", "7", "--layer", "2")
    assert (s.layer, s.neuron) == (2, 7)
    with pytest.raises(BadArgumentError, match="in layer 3 but --layer is 1"):
        state("--neuron", "3:5", "--layer", "1")
    with pytest.raises(BadArgumentError, match="layer 9 is out of range"):
        state("--neuron", "9:5")
