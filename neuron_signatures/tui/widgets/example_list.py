"""A list of atlas examples: one line each, its value and a coloured strip of its window.

Each strip shows the context around the example's token (more on the left, where the cause
usually is), as much as fits the width; ``…`` marks a cut side and the example's own token is bold
and underlined. Colours follow the shared heat rule with the neuron's ``max|v|`` over the atlas as
the scale, so strips of one neuron compare (:func:`~neuron_signatures.tui.heat.scaled_rgb`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np
from rich.cells import cell_len
from rich.segment import Segment
from rich.style import Style
from textual.geometry import Size
from textual.scroll_view import ScrollView
from textual.strip import Strip

from ...atlas import Example
from ..cells import ELLIPSIS, fit
from ..heat import ink_for, scaled_rgb
from .token_strip import heat_style, strip_pieces

VALUE_CELLS = 12  # "-1.234e-05" and a separator
LEFT_SHARE = 0.65  # share of the context cells spent left of the example's token


def context_range(
    cells: list[int], position: int, width: int, left_share: float = LEFT_SHARE
) -> tuple[int, int]:
    """Tokens ``[lo, hi)`` around ``position`` whose cells fit ``width``.

    Grows one token at a time, to the left while the left side holds less than ``left_share``
    of the cells used by the context, else to the right; a side that no longer fits stops and
    the other goes on. The token at ``position`` is always in (it may be wider than ``width``).

    Args:
        cells: the width of each token of the window, in terminal cells.
        position: the example's token.
        width: cells available.
        left_share: the left side's target share of the context.
    """
    n = len(cells)
    lo, hi = position, position + 1
    used = cells[position]
    left = right = 0
    while True:
        can_left = lo > 0 and used + cells[lo - 1] <= width
        can_right = hi < n and used + cells[hi] <= width
        if not (can_left or can_right):
            return lo, hi
        if can_left and (not can_right or left <= left_share * (left + right)):
            lo -= 1
            left += cells[lo]
            used += cells[lo]
        else:
            right += cells[hi]
            used += cells[hi]
            hi += 1


@dataclass(frozen=True)
class Piece:
    """One piece of a laid-out line: its text and the token it shows (``-1``: no token)."""

    text: str
    token: int


def example_pieces(example: Example, width: int) -> list[Piece]:
    """The strip of ``example`` in ``width`` cells: tokens around its position, ``…`` at cuts."""
    pieces = strip_pieces(example.tokens)
    if not pieces:
        return []
    cells = [cell_len(p) for p in pieces]
    pos = min(max(0, example.position), len(pieces) - 1)
    lo, hi = context_range(cells, pos, max(1, width))
    if lo > 0 or hi < len(pieces):  # room for the cut marks
        lo, hi = context_range(cells, pos, max(1, width - (lo > 0) - (hi < len(pieces))))
    out = [Piece(ELLIPSIS, -1)] if lo > 0 else []
    for i in range(lo, hi):
        text = pieces[i] if hi - lo > 1 else fit(pieces[i], max(1, width))
        out.append(Piece(text, i))
    if hi < len(pieces):
        out.append(Piece(ELLIPSIS, -1))
    return out


def value_label(value: float) -> str:
    """The value column of an example line: ``+0.3926   │ ``."""
    return f"{value:+.4g}".ljust(VALUE_CELLS - 2) + "│ "


class ExampleList(ScrollView, can_focus=False):
    """A title line and one line per example; scrolls (wheel, or the screen's ↑ / ↓) when the
    examples outgrow its height."""

    COMPONENT_CLASSES: ClassVar[set[str]] = {"example-list--title", "example-list--value"}
    DEFAULT_CSS = """
    ExampleList { overflow-x: hidden; overflow-y: auto; scrollbar-size-vertical: 0; }
    ExampleList > .example-list--title { text-style: bold; }
    ExampleList > .example-list--value { color: $text-muted; }
    """

    def __init__(self, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.heading = ""
        self.examples: list[Example] = []
        self.scale = 0.0
        self._lines: list[list[Piece]] = []
        self._colours: list[tuple[list[tuple[int, int, int]], list[bool]]] = []
        self._styles: dict[str, Style] | None = None

    def show(self, title: str, examples: list[Example], scale: float) -> None:
        """List ``examples`` under ``title``, coloured with the neuron's ``scale``."""
        self.heading, self.examples, self.scale = title, examples, scale
        self._layout()
        self.scroll_to(y=0, animate=False, immediate=True)

    def _layout(self) -> None:
        width = self.size.width
        bg = self.background_colors[1]
        self._lines, self._colours = [], []
        for ex in self.examples:
            self._lines.append(example_pieces(ex, width - VALUE_CELLS))
            acts = np.asarray(ex.acts if ex.acts else [0.0] * len(ex.tokens), dtype=np.float64)
            rgb = scaled_rgb(acts, (bg.r, bg.g, bg.b), self.scale)
            self._colours.append(([tuple(c) for c in rgb.tolist()], ink_for(rgb).tolist()))
        self.virtual_size = Size(width, 1 + len(self.examples))
        self.refresh()

    def on_resize(self) -> None:
        if self.examples or self.heading:
            self._layout()

    def notify_style_update(self) -> None:
        self._styles = None
        super().notify_style_update()

    def line_text(self, y: int) -> str:
        """The plain text of content line ``y`` (0 is the title), whatever the scroll."""
        if y == 0:
            return self.heading
        return value_label(self.examples[y - 1].value) + "".join(p.text for p in self._lines[y - 1])

    def render_line(self, y: int) -> Strip:
        if self._styles is None:
            self._styles = {"base": self.rich_style} | {
                name: self.get_component_rich_style(f"example-list--{name}")
                for name in ("title", "value")
            }
        base, width = self._styles["base"], self.size.width
        row = int(self.scroll_offset.y) + y
        if row == 0:
            title = base + self._styles["title"]
            return Strip([Segment(fit(self.heading, width), title)]).adjust_cell_length(width, base)
        if row > len(self.examples):
            return Strip.blank(width, base)
        ex, (rgb, dark) = self.examples[row - 1], self._colours[row - 1]
        segments = [Segment(value_label(ex.value), base + self._styles["value"])]
        for p in self._lines[row - 1]:
            if p.token < 0 or p.token >= len(rgb):
                segments.append(Segment(p.text, base))
            else:
                style = heat_style(rgb[p.token], dark[p.token], p.token == ex.position)
                segments.append(Segment(p.text, base + style))
        return Strip(segments).adjust_cell_length(width, base)
