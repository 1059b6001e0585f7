"""Terminal-cell helpers: token labels whose width is certain, and truncation by cells.

Terminals and Rich disagree on the width of some characters: a variation selector (U+FE0F) makes
the character before it wide in some terminals and not in others, combining marks and zero-width
joiners merge with their neighbours, skin-tone modifiers and flag letters pair up. One such
character in a token shifts every column after it. :func:`visible` therefore writes each of them
as an escape (``\\ufe0f``), so every character left has one fixed width (1, or 2 for East Asian
wide characters) and ``cell_len`` is the sum of the characters' widths.
"""

from __future__ import annotations

import unicodedata
from functools import lru_cache

from rich.cells import cell_len, set_cell_size

from ..tokens import token_display

ELLIPSIS = "…"
# Categories whose width depends on the neighbours or the terminal: combining marks, format and
# control characters, separators, surrogates, private-use and unassigned code points.
_UNSTABLE_CATEGORIES = frozenset({"Mn", "Mc", "Me", "Cf", "Cc", "Cs", "Co", "Cn", "Zl", "Zp"})
_PAIRING = ((0x1F1E6, 0x1F1FF), (0x1F3FB, 0x1F3FF), (0xFE00, 0xFE0F), (0xE0100, 0xE01EF))


@lru_cache(maxsize=1 << 14)
def _escape_char(ch: str) -> str:
    """``ch`` itself when its width is fixed, else its ``\\uXXXX`` / ``\\UXXXXXXXX`` escape."""
    o = ord(ch)
    stable = (
        unicodedata.category(ch) not in _UNSTABLE_CATEGORIES
        and not any(lo <= o <= hi for lo, hi in _PAIRING)
        and cell_len(ch) > 0
    )
    if stable:
        return ch
    return f"\\u{o:04x}" if o <= 0xFFFF else f"\\U{o:08x}"


@lru_cache(maxsize=1 << 16)
def visible(text: str) -> str:
    """A token or label as the terminal shows it: :func:`token_display` (``\\n``, ``\\t``, spaces
    kept) with every character of uncertain width escaped, so columns never shift."""
    shown = token_display(text)
    if shown.isascii():
        return shown
    return "".join(_escape_char(ch) for ch in shown)


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
    label = f"'{visible(token)}'"
    return label if width is None else fit(label, width)
