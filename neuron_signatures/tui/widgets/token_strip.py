"""The token strip: the whole prompt, each token shaded like the web heatmap.

A line-API widget: the prompt is wrapped into lines once per prompt and width; a key press only
recolours the tokens on screen, so long prompts cost no more than short ones.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from rich.cells import cell_len
from rich.color import Color
from rich.segment import Segment
from rich.style import Style
from textual.geometry import Size
from textual.scroll_view import ScrollView
from textual.strip import Strip

from ..cells import visible
from ..heat import heat_rgb, ink_for

MAX_LINES = 6
_DARK_INK = Color.from_rgb(20, 20, 20)


def strip_pieces(tokens: list[str]) -> list[str]:
    """What each token shows: :func:`~neuron_signatures.tui.cells.visible` (``\\n`` for a newline,
    spaces kept, characters of uncertain width escaped); ``∅`` for an empty token."""
    return [visible(t) or "∅" for t in tokens]


def wrap_pieces(pieces: list[str], width: int) -> list[list[tuple[int, str]]]:
    """Lay ``pieces`` out in lines of ``width`` cells: ``[(token index, text), ...]`` per line.

    Tokens stay whole unless one is wider than a line, which is then cut into line-sized parts.
    """
    width = max(1, width)
    lines: list[list[tuple[int, str]]] = [[]]
    used = 0
    for i, piece in enumerate(pieces):
        rest = piece
        while rest:
            room = width - used
            size = cell_len(rest)
            if size <= room:
                lines[-1].append((i, rest))
                used += size
                break
            if used:  # start a new line rather than split the token
                lines.append([])
                used = 0
                continue
            cut = _cells_prefix(rest, room)
            lines[-1].append((i, rest[:cut]))
            rest = rest[cut:]
            lines.append([])
            used = 0
    return [line for line in lines if line] or [[]]


def _cells_prefix(text: str, cells: int) -> int:
    """The longest prefix length of ``text`` fitting in ``cells`` cells (at least one char)."""
    total = 0
    for n, ch in enumerate(text):
        total += cell_len(ch)
        if total > cells:
            return max(1, n)
    return len(text)


@lru_cache(maxsize=4096)
def heat_style(rgb: tuple[int, int, int], dark_ink: bool, cursor: bool) -> Style:
    """The Rich style of one token: heat background, dark ink on light colours, cursor marked."""
    return Style(
        bgcolor=Color.from_rgb(*rgb),
        color=_DARK_INK if dark_ink else None,
        bold=cursor or None,
        underline=cursor or None,
    )


class TokenStrip(ScrollView, can_focus=False):
    """Every token of the prompt on screen, coloured by the current neuron's activation."""

    DEFAULT_CSS = "TokenStrip { overflow-x: hidden; height: 1; }"

    def __init__(self, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self._pieces: list[str] = []
        self._lines: list[list[tuple[int, str]]] = [[]]
        self._rgb: list[tuple[int, int, int]] = []
        self._dark: list[bool] = []
        self._cursor = 0
        self._base: Style | None = None
        self._width = 0
        self._laid_out: tuple[int, int] | None = None
        self._last: tuple[int, list[str], np.ndarray, int, int] | None = None

    def show(
        self, prompt_idx: int, tokens: list[str], values: np.ndarray, cursor: int, n_bos: int
    ) -> None:
        """Colour the prompt; it is re-wrapped only when another prompt (or width) shows."""
        self._last = (prompt_idx, tokens, values, cursor, n_bos)
        width = self._width = self.size.width
        if (prompt_idx, width) != self._laid_out:
            self._pieces = strip_pieces(tokens)
            self._lines = wrap_pieces(self._pieces, width)
            self._laid_out = (prompt_idx, width)
            self.virtual_size = Size(width, len(self._lines))
            self.styles.height = min(MAX_LINES, len(self._lines))
        bg = self.background_colors[1]
        rgb = heat_rgb(values, (bg.r, bg.g, bg.b), n_bos)
        self._rgb = [(r, g, b) for r, g, b in rgb.tolist()]
        self._dark = ink_for(rgb).tolist()
        self._cursor = cursor
        self._follow(cursor)
        self.refresh()

    def _follow(self, cursor: int) -> None:
        """Scroll so the line holding the cursor token is visible."""
        row = next((y for y, line in enumerate(self._lines) if line and line[-1][0] >= cursor), 0)
        top, height = int(self.scroll_offset.y), max(1, self.size.height)
        if not top <= row < top + height:
            self.scroll_to(y=max(0, row - height + 1), animate=False, immediate=True)

    def notify_style_update(self) -> None:
        self._base = None
        super().notify_style_update()

    def on_resize(self) -> None:
        if self._last is not None:
            self.show(*self._last)

    @property
    def text(self) -> str:
        """The strip's plain text, one wrapped line per line."""
        return "\n".join("".join(t for _, t in line) for line in self._lines)

    def render_line(self, y: int) -> Strip:
        width = self._width
        row = int(self.scroll_offset.y) + y
        if self._base is None:
            self._base = self.rich_style  # the DOM walk is slow: once per style change
        base = self._base
        if row >= len(self._lines) or not self._rgb:
            return Strip.blank(width, base)
        segments = [
            Segment(text, base + heat_style(self._rgb[i], self._dark[i], i == self._cursor))
            for i, text in self._lines[row]
        ]
        return Strip(segments).adjust_cell_length(width, base)
