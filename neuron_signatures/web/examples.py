"""Atlas examples as Neuronpedia-style heatmap rows (pure: examples in, HTML out).

1. A top or bottom example is a corpus window with the neuron's activation on every token. Its row
   shows ``context`` tokens either side of the example's own token (the token that ranked), that
   token outlined; a ``<details>`` expander under it holds the whole window.
2. An interval sample carries only the value on its own token: that token alone is coloured, the
   others say ``n/a`` in their tooltip.
3. Colours, opacities and escaping are the shared heat rule of :mod:`.heatmap`; each section has
   one scale (``max|v|`` of its kind of example), so rows of a section compare by eye.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..atlas.record import Example, Interval
from ..tokens import token_display
from .heatmap import CSS, HeatmapConfig, escape, rows_html, token_cells

EXAMPLE_CSS = (
    "<style>"
    ".nsa-ex{margin:2px 0 6px 0}"
    ".nsa-ex summary{cursor:pointer;list-style-position:outside}"
    ".nsa-more{align-self:center;color:#888;padding:0 2px}"
    ".nsa-label{font-size:12px;color:#555;margin:0 0 2px 0}"
    ".nsa-full{margin:4px 0 0 14px;padding-left:6px;border-left:2px solid #ddd}"
    ".nsa-interval{font-weight:600;margin:10px 0 4px 0}"
    "</style>"
)


def context_bounds(n: int, position: int, context: int) -> tuple[int, int]:
    """``[lo, hi)`` of the tokens within ``context`` of ``position`` in a window of ``n``."""
    c = max(0, int(context))
    return max(0, position - c), min(n, position + c + 1)


def example_values(ex: Example) -> np.ndarray:
    """``[len(tokens)]`` the activations of the window, or NaN but on the example's own token."""
    if ex.acts is not None:
        return np.asarray(ex.acts[: len(ex.tokens)], dtype=np.float64)
    vals = np.full(len(ex.tokens), np.nan)
    if 0 <= ex.position < len(vals):
        vals[ex.position] = ex.value
    return vals


def example_label(rank: int | None, ex: Example) -> str:
    """``#1 | +5.69 on 'things' | doc 23 (topic=work)``: what the row is and where it comes from."""
    tok = ex.tokens[ex.position] if 0 <= ex.position < len(ex.tokens) else ""
    meta = ", ".join(f"{k}={v}" for k, v in ex.meta.items())
    parts = [f"#{rank}"] if rank is not None else []
    parts += [f"{ex.value:+.4g} on {token_display(tok)!r}", f"doc {ex.document}"]
    return " | ".join(parts) + (f" ({meta})" if meta else "")


def example_html(
    ex: Example, scale: float, cfg: HeatmapConfig, context: int, rank: int | None = None
) -> str:
    """One example: its label and context row (click to open the whole window)."""
    vals = example_values(ex)
    n = len(ex.tokens)
    lo, hi = context_bounds(n, ex.position, context)
    cut = token_cells(
        ex.tokens[lo:hi], ex.token_ids[lo:hi], vals[lo:hi], scale, cfg, lo, ex.position
    )
    dots = '<span class="nsa-more">…</span>'
    row = (
        '<div class="nsh-row">'
        + (dots if lo > 0 else "")
        + "".join(cut)
        + (dots if hi < n else "")
        + "</div>"
    )
    head = f'<div class="nsa-label">{escape(example_label(rank, ex))}</div>'
    if lo == 0 and hi == n:  # nothing more to show
        return f'<div class="nsa-ex">{head}{row}</div>'
    full = rows_html(
        token_cells(ex.tokens, ex.token_ids, vals, scale, cfg, 0, ex.position), cfg.tokens_per_row
    )
    return (
        f'<details class="nsa-ex"><summary>{head}{row}</summary>'
        f'<div class="nsa-full">{full}</div></details>'
    )


def examples_html(
    examples: Sequence[Example], scale: float, cfg: HeatmapConfig, context: int
) -> str:
    """Rows of ranked examples (top or bottom), best first."""
    body = "".join(example_html(ex, scale, cfg, context, i + 1) for i, ex in enumerate(examples))
    return CSS + EXAMPLE_CSS + f'<div class="nsa-examples">{body}</div>'


def intervals_html(
    intervals: Sequence[Interval], scale: float, cfg: HeatmapConfig, context: int
) -> str:
    """Every interval's label (``interval lo–hi contains x% of tokens``) and its samples."""
    parts = [CSS, EXAMPLE_CSS, '<div class="nsa-intervals">']
    for iv in reversed(intervals):  # highest values first, as the top examples
        parts.append(f'<div class="nsa-interval">{escape(iv.label)}</div>')
        if not iv.samples:
            parts.append('<div class="nsa-label">no samples kept</div>')
        parts.extend(example_html(ex, scale, cfg, context) for ex in iv.samples)
    parts.append("</div>")
    return "".join(parts)
