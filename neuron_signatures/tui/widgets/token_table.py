"""The token table: one row per token with ctx_idx, token id, token, activation and a signed bar.

A line-API widget (``ScrollView.render_line``): only the rows on screen are formatted, so the
all-tokens view of a long prompt redraws as fast as the window. Line 0 is the column header; the
token column narrows (down to :data:`MIN_TOKEN` cells) on narrow terminals before the bar does.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np
from rich.segment import Segment
from rich.style import Style
from textual.geometry import Size
from textual.scroll_view import ScrollView
from textual.strip import Strip

from ..cells import pad, quoted
from ..heat import NEGATIVE_RGB, POSITIVE_RGB
from ..state import BrowserState, NeuronStats

MAX_TOKEN, MIN_TOKEN, MIN_BAR = 22, 8, 10
OTHER_CELLS = 2 + 6 + 2 + 8 + 2 + 2 + 12 + 2  # marks, ctx_idx, token_id, activation, gaps
_EIGHTHS = " ▏▎▍▌▋▊▉"


def bar(value: float, max_abs: float, width: int) -> str:
    """``|value| / max_abs`` of ``width`` cells in block characters (eighths), at least 0."""
    if max_abs <= 0 or width <= 0 or not np.isfinite(value):
        return ""
    eighths = round(min(abs(value) / max_abs, 1.0) * width * 8)
    full, rest = divmod(eighths, 8)
    return "█" * full + (_EIGHTHS[rest] if rest else "")


def column_cells(width: int) -> tuple[int, int]:
    """``(token cells, bar cells)`` for a table ``width`` cells wide."""
    token = max(MIN_TOKEN, min(MAX_TOKEN, width - OTHER_CELLS - MIN_BAR))
    return token, max(MIN_BAR, width - OTHER_CELLS - token)


@dataclass(frozen=True)
class TableView:
    """What the table shows: prompt tokens ``start..stop-1`` and the current neuron's values."""

    tokens: list[str]
    token_ids: list[int]
    values: np.ndarray  # [seq] the whole prompt
    start: int
    stop: int
    cursor: int
    argmax: int
    max_abs: float
    capacity: int  # rows the view can hold (2 * window + 1, or seq): the scroll range
    mode: str = ""  # "±15" or "all"

    @property
    def all_tokens(self) -> bool:
        return self.mode == "all"

    def header(self, width: int) -> str:
        """The column names and which rows are shown, e.g. ``0..15/300 (±15)``."""
        token, _ = column_cells(width)
        where = f"{self.start}..{self.stop - 1}/{len(self.tokens)} ({self.mode})"
        return (
            f"{'':2}{'ctx_idx':>6}  {'token_id':>8}  {'token':<{token}}  {'activation':>12}  "
            + (f"bar  {where}")
        )

    def row_text(self, i: int, width: int) -> tuple[str, str]:
        """Row ``i`` (a ctx_idx) as ``(columns, bar)`` plain text for a ``width``-cell table."""
        token_cells, bar_cells = column_cells(width)
        mark = (">" if i == self.cursor else " ") + ("*" if i == self.argmax else " ")
        token = pad(quoted(self.tokens[i]), token_cells)
        value = float(self.values[i])
        cols = f"{mark}{i:>6}  {self.token_ids[i]:>8}  {token}  {value:+12.6f}  "
        return cols, bar(value, self.max_abs, bar_cells)


def table_view(state: BrowserState, values: np.ndarray, stats: NeuronStats) -> TableView:
    """The table's view of the browser state (``values: [seq]`` of the current neuron)."""
    p = state.prompt
    start, stop = state.window_range()
    capacity = p.seq_len if state.show_all else min(p.seq_len, 2 * state.window + 1)
    mode = "all" if state.show_all else f"±{state.window}"
    return TableView(
        p.tokens, p.token_ids, values, start, stop, state.ctx_idx, stats.max_idx,
        stats.max_abs, capacity, mode,
    )  # fmt: skip


class TokenTable(ScrollView, can_focus=False):
    """Rows of the current view under a header line; the cursor row is kept in sight."""

    COMPONENT_CLASSES: ClassVar[set[str]] = {
        "token-table--header",
        "token-table--cursor",
        "token-table--argmax",
    }
    DEFAULT_CSS = """
    TokenTable { overflow-x: hidden; }
    TokenTable > .token-table--header { text-style: bold; color: $text-muted; }
    TokenTable > .token-table--cursor { background: $accent 40%; text-style: bold; }
    TokenTable > .token-table--argmax { text-style: bold; }
    """

    def __init__(self, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.view: TableView | None = None
        self._style_cache: dict[str, Style] | None = None
        self._width = 0
        self._pos = Style(color=f"rgb{POSITIVE_RGB}")
        self._neg = Style(color=f"rgb{NEGATIVE_RGB}")

    def show(self, view: TableView) -> None:
        self.view = view
        self._width = self.size.width
        # A scrollbar only for the all-tokens view (a window is always centred on the cursor).
        overflow = "auto" if view.all_tokens else "hidden"
        if self.styles.overflow_y != overflow:
            self.styles.overflow_y = overflow
        # A constant scroll range while the window slides, so a key press needs no new layout.
        size = Size(self._width, view.capacity + 1)
        if size != self.virtual_size:
            self.virtual_size = size
        self._follow_cursor()
        self.refresh()

    def on_resize(self) -> None:
        if self.view is not None:
            self.show(self.view)

    def _follow_cursor(self) -> None:
        """Scroll the least that keeps the cursor row on screen (below the header line)."""
        assert self.view is not None
        row, height = self.view.cursor - self.view.start, max(1, self.size.height - 1)
        top = int(self.scroll_offset.y)
        if row < top:
            top = row
        elif row >= top + height:
            top = row - height + 1
        top = max(0, min(top, self.view.stop - self.view.start - height))
        if top != int(self.scroll_offset.y):
            self.scroll_to(y=top, animate=False, immediate=True)

    def line_text(self, y: int) -> str:
        """The plain text of screen line ``y`` (what :meth:`render_line` draws)."""
        return self.render_line(y).text

    def _styles(self) -> dict[str, Style]:
        """Component styles, looked up once per style change (the DOM walk is slow)."""
        if self._style_cache is None:
            self._style_cache = {"base": self.rich_style} | {
                name: self.get_component_rich_style(f"token-table--{name}")
                for name in ("header", "cursor", "argmax")
            }
        return self._style_cache

    def notify_style_update(self) -> None:
        self._style_cache = None
        super().notify_style_update()

    def render_line(self, y: int) -> Strip:
        width, styles, view = self._width, self._styles(), self.view
        base = styles["base"]
        row = int(self.scroll_offset.y) + y - 1
        if view is None or row >= view.stop - view.start:
            return Strip.blank(width, base)
        if y == 0:
            head = base + styles["header"]
            return Strip([Segment(view.header(width), head)]).adjust_cell_length(width, head)
        i = view.start + row
        cols, bar_text = view.row_text(i, width)
        style = base
        if i == view.argmax:
            style += styles["argmax"]
        if i == view.cursor:
            style += styles["cursor"]
        sign = self._pos if float(view.values[i]) >= 0 else self._neg
        strip = Strip([Segment(cols, style), Segment(bar_text, style + sign)])
        return strip.adjust_cell_length(width, style)
