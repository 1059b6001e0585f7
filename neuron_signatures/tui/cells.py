"""Terminal-cell helpers: safe token labels and truncation that respects wide characters."""

from __future__ import annotations

from rich.cells import cell_len, set_cell_size

from ..tokens import token_display

ELLIPSIS = "…"


def fit(text: str, width: int) -> str:
    """``text`` cut to at most ``width`` cells, with ``…`` when something was cut (no padding)."""
    if width <= 0:
        return ""
    if cell_len(text) <= width:
        return text
    return set_cell_size(text, width - 1).rstrip() + ELLIPSIS


def pad(text: str, width: int) -> str:
    """``text`` cut or padded with spaces to exactly ``width`` cells."""
    return set_cell_size(fit(text, width), width)


def quoted(token: str, width: int | None = None) -> str:
    """A token shown losslessly but safely, quoted so leading spaces show: ``' the'``, ``'\\n'``.

    With ``width``, the label is cut to that many cells (``…`` marks the cut).
    """
    label = f"'{token_display(token)}'"
    return label if width is None else fit(label, width)
