"""Pilot tests: every key of the browser, its dialogs and the ranked panel, on synthetic runs."""

from __future__ import annotations

import numpy as np
import pytest
from textual.widgets import Input, OptionList

from neuron_signatures.store import open_run
from neuron_signatures.tokens import token_display
from neuron_signatures.tui import BrowserApp, BrowserState
from neuron_signatures.tui.keys import KEYS
from neuron_signatures.tui.screens import GoToDialog, HelpScreen, PromptPicker
from neuron_signatures.tui.widgets import RankedPanel, RunHeader, TokenStrip, TokenTable

from .conftest import D_MLP, SynthRun

pytestmark = pytest.mark.anyio  # Pilot needs an event loop: anyio's pytest plugin runs it

SIZE = (140, 42)


def header(app: BrowserApp) -> str:
    return str(app.browser.query_one(RunHeader).content)


def table(app: BrowserApp) -> list[str]:
    t = app.browser.query_one(TokenTable)
    return [t.line_text(y).rstrip() for y in range(t.size.height)]


def cursor_row(app: BrowserApp) -> str:
    rows = [line for line in table(app) if line.startswith(">")]
    assert len(rows) == 1, rows
    return rows[0]


def expected_value(run: SynthRun, app: BrowserApp) -> float:
    s = app.state
    return float(run.acts[s.prompt_idx][s.layer, s.ctx_idx, s.neuron])


def app_for(run: SynthRun, **kwargs: object) -> BrowserApp:
    return BrowserApp(BrowserState(open_run(run.path), **kwargs))  # type: ignore[arg-type]


async def test_first_view_shows_the_prototype_header_and_safe_tokens(synth_run: SynthRun) -> None:
    app = app_for(synth_run)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        text = header(app)
        v = synth_run.acts[0][0, :, 0].astype(np.float64)
        lines = text.splitlines()
        assert lines[0] == f"Run: {synth_run.path}"
        assert lines[1].startswith("Model: synthetic | hook: blocks.{l}.mlp.hook_post")
        assert lines[2] == f"Prompt 1/12: p0000_austin | seq_len={v.size}"
        assert lines[4] == f"Layer 0/3 | Neuron 0/{D_MLP - 1}"
        assert lines[5] == f"Cursor: ctx_idx=0 | token_id=2 | token='<bos>' | act={v[0]:+.6f}"
        assert f"min={v.min():+.6f}@{int(v.argmin())}" in lines[6]
        assert f"mean={v.mean():+.6f} | std={v.std():.6f}" in lines[6]
        rows = table(app)
        assert rows[0].split()[:5] == ["ctx_idx", "token_id", "token", "activation", "bar"]
        rows = rows[1:]
        assert rows[0].startswith(">*     0         2  '<bos>'")  # cursor and argmax (BOS sink)
        assert len([r for r in rows if r.strip()]) == min(16, v.size)  # ctx 0 ± 15
        shown = "\n".join(rows)
        toks = synth_run.prompts[0]["tokens"]
        for raw, safe in [("\n", "'\\n'"), ("\t", "'\\t'"), ("\x07", "'\\x07'"), ("\\", "'\\\\'")]:
            if raw in toks[:16]:
                assert safe in shown
        assert "\x07" not in shown and "\t" not in shown
        strip = app.browser.query_one(TokenStrip).text
        assert strip.replace("\n", "").startswith("<bos>")
        assert "[bold]x[/bold]" in strip  # markup is shown, not interpreted


async def test_arrows_neurons_and_prompts(synth_run: SynthRun) -> None:
    app = app_for(synth_run)
    s = app.state
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("right", "right")
        assert s.layer == 2 and "Layer 2/3 |" in header(app)
        await pilot.press("left")
        assert s.layer == 1
        await pilot.press("left", "left")
        assert s.layer == 0  # clamped
        await pilot.press("down", "down", "down")
        assert s.ctx_idx == 3 and "Cursor: ctx_idx=3 |" in header(app)
        assert cursor_row(app)[2:8] == "     3"
        await pilot.press("up")
        assert s.ctx_idx == 2
        await pilot.press("n", "n", "n")
        assert s.neuron == 3
        await pilot.press("b")
        assert s.neuron == 2 and f"Neuron 2/{D_MLP - 1}" in header(app)
        assert f"{expected_value(synth_run, app):+12.6f}" in cursor_row(app)
        await pilot.press("pagedown", "pagedown")
        assert s.neuron == 202
        await pilot.press("pagedown")
        assert s.neuron == D_MLP - 1  # clamped
        await pilot.press("pageup")
        assert s.neuron == D_MLP - 101
        assert f"{expected_value(synth_run, app):+12.6f}" in cursor_row(app)
        await pilot.press("right_square_bracket")
        assert (s.prompt_idx, s.ctx_idx) == (1, 0)
        assert "Prompt 2/12: p0001_dallas" in header(app)
        await pilot.press("left_square_bracket", "left_square_bracket")
        assert s.prompt_idx == 0


async def test_all_tokens_toggle_scrolls_to_the_cursor(synth_run: SynthRun) -> None:
    app = app_for(synth_run, prompt=5)  # 300 tokens
    async with app.run_test(size=SIZE) as pilot:
        assert table(app)[0].endswith("0..15/300 (±15)")
        await pilot.press("a")
        assert app.state.show_all and table(app)[0].endswith("0..299/300 (all)")
        await pilot.press(*["down"] * 32)  # past the bottom of the table: it scrolls
        assert app.state.ctx_idx == 32
        assert cursor_row(app)[2:8] == "    32"
        assert not table(app)[1].startswith(">*     0")  # row 0 scrolled away
        assert "ctx_idx" in table(app)[0]  # the header line stays
        await pilot.press("a")
        assert not app.state.show_all and table(app)[0].endswith("17..47/300 (±15)")
        assert cursor_row(app)[2:8] == "    32"


async def _type(pilot, text: str) -> None:  # type: ignore[no-untyped-def]
    await pilot.press(*list(text))


def _fill(app: BrowserApp, text: str) -> None:
    """Put ``text`` in the open dialog's input (as a paste would; faster than one key each)."""
    app.screen.query_one(Input).value = text


DIALOG_CASES = [
    ("g", "300", "neuron 300 is out of range: type 0..255", "42", "neuron", 42),
    ("g", "abc", "'abc' is not a neuron id", "0", "neuron", 0),
    ("g", "L9/N1", "layer 9 is out of range", "L0/N3", "neuron", 3),
    ("l", "7", "layer 7 is out of range: type 0..3", "2", "layer", 2),
    ("l", "", "'' is not a whole number", "1", "layer", 1),
    ("c", "-1", "ctx_idx -1 is out of range", "4", "ctx_idx", 4),
]


async def test_goto_dialogs_validate_and_keep_running(synth_run: SynthRun) -> None:
    app = app_for(synth_run, neuron=5)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("g")
        await _type(pilot, "1x")  # typed key by key once
        await pilot.press("enter")
        assert isinstance(app.screen, GoToDialog)
        assert "'1x' is not a neuron id: type it as L17/N1152" in app.screen.error
        await pilot.press("escape")
        for key, bad, message, good, field, value in DIALOG_CASES:
            before = getattr(app.state, field)
            await pilot.press(key)
            dialog = app.screen
            assert isinstance(dialog, GoToDialog)
            _fill(app, bad)
            await pilot.press("enter")
            assert app.screen is dialog and app.is_running  # still open, app alive
            assert message in dialog.error
            assert getattr(app.state, field) == before
            _fill(app, good)
            await pilot.pause()
            assert dialog.error == ""  # the message goes once the input changes
            await pilot.press("enter")
            assert not isinstance(app.screen, GoToDialog)
            assert getattr(app.state, field) == value
            await pilot.press(key, "9", "escape")  # Escape cancels
            assert not isinstance(app.screen, GoToDialog) and getattr(app.state, field) == value
        assert f"Layer 1/3 | Neuron 3/{D_MLP - 1}" in header(app)
        assert "Cursor: ctx_idx=4 |" in header(app)


async def test_help_lists_every_key_on_its_own_line(synth_run: SynthRun) -> None:
    app = app_for(synth_run)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("question_mark")
        assert isinstance(app.screen, HelpScreen)
        text = str(app.screen.query_one("#help-text").content)
        lines = text.splitlines()
        for k in KEYS:
            assert any(line.strip().startswith(k.label) and k.help in line for line in lines), k
        assert "\\n" not in text
        await pilot.press("escape")
        assert not isinstance(app.screen, HelpScreen)


async def test_search_and_pick_prompts(synth_run: SynthRun) -> None:
    app = app_for(synth_run)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("slash")
        picker = app.screen
        assert isinstance(picker, PromptPicker)
        await _type(pilot, "p0007")
        assert picker.matches == [7]
        await pilot.press("enter")
        assert app.state.prompt_idx == 7 and "Prompt 8/12: p0007_dallas" in header(app)
        await pilot.press("slash")
        _fill(app, "zzz")
        await pilot.pause()
        status = str(app.screen.query_one("#picker-status").content)
        assert "no prompt matches 'zzz'" in status
        await pilot.press("enter")  # nothing to pick: stays open
        assert isinstance(app.screen, PromptPicker)
        await pilot.press("escape")
        assert app.state.prompt_idx == 7
        await pilot.press("slash")
        _fill(app, "AUSTIN")  # ids p0000, p0003, ... contain "austin"
        await pilot.pause()
        await pilot.press("down", "down", "enter")  # into the list, one row down, pick
        assert app.state.prompt_idx == 3
        await pilot.press("p")
        assert isinstance(app.screen, PromptPicker)
        assert app.screen.query_one(OptionList).highlighted == 3  # opens on the current prompt
        await pilot.press("down", "enter")
        assert app.state.prompt_idx == 4


async def test_without_analysis_the_panel_is_hidden(synth_run: SynthRun) -> None:
    app = app_for(synth_run)
    async with app.run_test(size=SIZE) as pilot:
        assert not app.browser.query_one(RankedPanel).display
        for key in ("t", "right_curly_bracket", "left_curly_bracket", "r"):
            await pilot.press(key)
            assert app.is_running
        assert (app.state.layer, app.state.neuron) == (0, 0)
        assert any("no analysis files" in n.message for n in app._notifications)


async def test_ranked_panel_steps_and_jumps(ranked_run: SynthRun) -> None:
    app = app_for(ranked_run)
    s = app.state
    async with app.run_test(size=SIZE) as pilot:
        panel = app.browser.query_one(RankedPanel)
        options = panel.query_one(OptionList)
        assert panel.display and options.option_count == 3
        first = str(options.get_option_at_index(0).prompt)
        assert first.split()[:5] == ["1", "2", "17", "+3.5", "Austin"]
        assert "\\n" in str(options.get_option_at_index(1).prompt)  # label shown escaped
        await pilot.press("right_curly_bracket")
        assert (s.layer, s.neuron) == (2, 17)
        assert "lexical: Austin detector" in str(panel.query_one("#ranked-signature").content)
        await pilot.press("right_curly_bracket")
        assert (s.layer, s.neuron) == (1, 250) and options.highlighted == 1
        assert "no signature" in str(panel.query_one("#ranked-signature").content)
        await pilot.press("left_curly_bracket")
        assert (s.layer, s.neuron) == (2, 17)
        await pilot.press("r")  # the influence ranking: jumps to its prompt and token too
        assert "influence" in str(panel.query_one("#ranked-title").content)
        await pilot.press("right_curly_bracket")
        assert (s.prompt_idx, s.layer, s.neuron, s.ctx_idx) == (5, 3, 200, 2)
        await pilot.press("t")
        assert options.has_focus
        await pilot.press("down", "enter")  # rank 2 of the influence ranking
        assert (s.layer, s.neuron, s.ctx_idx) == (0, 9, 1)
        await pilot.press("n")  # other keys still work while the panel has focus
        assert s.neuron == 10
        await pilot.press("escape")
        assert not options.has_focus
        await pilot.press("down")  # arrows drive the token cursor again
        assert s.ctx_idx == 2


async def test_q_quits(synth_run: SynthRun) -> None:
    app = app_for(synth_run)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("q")
        await pilot.pause()
        assert not app.is_running


async def test_strip_colours_follow_the_heatmap(synth_run: SynthRun) -> None:
    app = app_for(synth_run, neuron=3)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        strip = app.browser.query_one(TokenStrip)
        segments = list(strip.render_line(0))
        bos = segments[0]
        assert bos.text == "<bos>"
        assert bos.style is not None and bos.style.bgcolor is not None
        assert bos.style.bgcolor.get_truecolor() == (52, 211, 153)  # BOS is clipped to opaque
        assert bos.style.underline  # the cursor token
        # Prompt 0 fits in the strip and no token is split: one segment per token, in order.
        pieces = [token_display(t) or "∅" for t in synth_run.prompts[0]["tokens"]]
        found = []
        for y in range(strip.size.height):
            for seg in strip.render_line(y):
                if len(found) < len(pieces) and seg.text == pieces[len(found)]:
                    found.append(seg)
        assert len(found) == len(pieces)
        v = synth_run.acts[0][0, :, 3]
        peak = 1 + int(np.abs(v[1:]).argmax())
        style = found[peak].style
        assert style is not None and style.bgcolor is not None
        full = (52, 211, 153) if v[peak] >= 0 else (251, 146, 60)
        assert style.bgcolor.get_truecolor() == full  # the strongest non-BOS token
