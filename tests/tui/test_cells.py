"""Tokens whose width terminals disagree on (variation selectors, combining and zero-width marks,
emoji modifiers, flags, East Asian wide characters) never shift the browser's columns."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from rich.cells import cell_len

from neuron_signatures.store import open_run
from neuron_signatures.tui import BrowserApp, BrowserState
from neuron_signatures.tui.cells import pad, quoted, visible
from neuron_signatures.tui.widgets import RunHeader, TokenStrip, TokenTable

SIZE = (120, 40)
WIDE = [
    "▁☺\ufe0f",  # text-style emoji + VS16: one cell or two, depending on the terminal
    "❤️",  # the same, pre-joined
    "e\u0301",  # e + combining acute (NFD)
    "\u200b",  # zero-width space
    "👨\u200d👩\u200d👧",  # ZWJ family
    "👍🏻",  # emoji + skin tone modifier
    "🇺🇸",  # regional-indicator flag
    "東京",  # East Asian wide
    "ｱ",  # half-width katakana
    "क्ष",  # Devanagari conjunct (virama)
    "\u1100\u1161",  # Hangul jamo L + V
    "\u00ad",  # soft hyphen
    "\ue000",  # private use
    "\U000e0041",  # tag character
]


def uniform(text: str) -> bool:
    """Every character has a fixed, non-zero width and the widths add up (no grapheme merging)."""
    return all(cell_len(ch) > 0 for ch in text) and cell_len(text) == sum(map(cell_len, text))


@pytest.mark.parametrize("token", WIDE)
def test_visible_escapes_characters_of_uncertain_width(token: str) -> None:
    shown = visible(token)
    assert uniform(shown), [(ch, cell_len(ch)) for ch in shown]
    assert uniform(quoted(token)) and cell_len(pad(quoted(token), 9)) == 9


def test_visible_keeps_what_is_safe() -> None:
    assert visible("▁Austin") == " Austin"
    assert visible("東京") == "東京" and cell_len(visible("東京")) == 4
    assert visible("▁café") == " café"  # precomposed é is one fixed-width character
    assert visible("e\u0301") == "e\\u0301"
    assert visible("☺\ufe0f") == "☺\\ufe0f"
    assert visible("👍🏻") == "👍\\U0001f3fb"


@pytest.fixture(scope="module")
def wide_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from neuron_signatures.store.build import write_run

    toks = ["<bos>", *WIDE, "▁end"]
    prompts = [{"probe_id": "wide\ufe0f", "text": "".join(WIDE), "tokens": toks,
                "token_ids": list(range(2, 2 + len(toks)))}]  # fmt: skip
    acts = [np.random.default_rng(0).normal(0, 1, (2, len(toks), 16)).astype(np.float32)]
    path = tmp_path_factory.mktemp("tui") / "wide"
    write_run(path, prompts, acts, save_dtype="fp32")
    return path


@pytest.mark.anyio
async def test_rows_with_wide_and_zero_width_tokens_keep_their_columns(wide_run: Path) -> None:
    app = BrowserApp(BrowserState(open_run(wide_run), window=40))
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        table = app.browser.query_one(TokenTable)
        width = table.size.width
        rows = [table.line_text(y) for y in range(1, len(WIDE) + 3)]
        for row in rows:
            assert uniform(row) and cell_len(row) == width, repr(row)
        # the activation column starts at the same cell in every row
        starts = {cell_len(row[: row.index(" +" if " +" in row else " -")]) for row in rows}
        assert len(starts) == 1, rows
        strip = app.browser.query_one(TokenStrip)
        for y in range(strip.size.height):
            line = strip.render_line(y)
            assert uniform(line.text) and line.cell_length == strip.size.width
        for line in str(app.browser.query_one(RunHeader).content).splitlines():
            assert uniform(line), repr(line)
