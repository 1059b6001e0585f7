"""Neuronpedia-style signed token heatmaps rendered as HTML (pure: numpy in, HTML string out).

Rules:

1. colour: green ``rgb(52,211,153)`` for a value >= 0, orange ``rgb(251,146,60)`` below 0;
2. opacity: ``min_op + log10(1 + 9 r) * (1 - min_op)`` with ``r = min(|v| / max|v|, 1)``, and 0 when
   ``|v| <= minimum_threshold`` (or when the scale is 0);
3. scale ``max|v|``: per prompt or global over all prompts of the neuron, BOS excluded by default
   (Gemma's BOS is an attention sink whose activation dwarfs every other token);
4. every token, label and tooltip is HTML-escaped: prompts are user data.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from ..heat import NEGATIVE_RGB, POSITIVE_RGB, colors, opacity
from ..tokens import token_display

__all__ = ["NEGATIVE_RGB", "POSITIVE_RGB", "colors", "opacity"]

NORMALIZATIONS = ("global", "per_prompt")

CSS = (
    "<style>"
    ".nsh-title{font-weight:600;margin:6px 0 2px 0}"
    ".nsh-meta{color:#666;font-size:12px;margin:0 0 6px 0}"
    ".nsh-prompt{margin:8px 0 2px 0;font-size:13px;font-weight:600}"
    ".nsh-row{display:flex;flex-wrap:wrap;gap:3px;margin-bottom:4px;align-items:flex-start}"
    ".nsh-cell{display:inline-flex;flex-direction:column;align-items:center;border:1px solid #ddd;"
    "border-radius:4px;padding:2px 4px;min-width:18px;color:#111;"
    "font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace}"
    ".nsh-tok{font-size:13px;font-weight:700;white-space:pre}"
    ".nsh-val{font-size:10px;opacity:.85}"
    ".nsh-compact .nsh-prompt{margin:4px 0 0 0;font-size:11px;color:#666;font-weight:400}"
    ".nsh-max{border:2px solid #111;padding:1px 3px}"
    "</style>"
)


@dataclass(frozen=True)
class HeatmapConfig:
    """Display settings shared by every heatmap of the page.

    Attributes:
        tokens_per_row: tokens per line before wrapping.
        show_values: print each value under its token.
        exclude_bos: leave BOS tokens out of ``max|v|``.
        normalization: ``global`` (one scale for all prompts) or ``per_prompt``.
        value_decimals: decimals of the printed values.
        minimum_threshold: ``|v|`` at or below this is not highlighted.
        minimum_opacity: opacity of the faintest highlighted token.
        compact: one small label per prompt instead of a title and a meta line.
    """

    tokens_per_row: int = 50
    show_values: bool = True
    exclude_bos: bool = True
    normalization: str = "global"
    value_decimals: int = 2
    minimum_threshold: float = 5e-5
    minimum_opacity: float = 0.05
    compact: bool = True


@dataclass(frozen=True)
class PromptHeat:
    """One prompt's row of the stacked heatmap: ``values: [seq]`` and its scale ``max|v|``."""

    label: str
    tokens: Sequence[str]
    token_ids: Sequence[int]
    values: np.ndarray
    scale: float
    meta: str = ""


def escape(text: object) -> str:
    """HTML-escape any text, quotes included (safe inside attributes too)."""
    return html.escape(str(text), quote=True)


@lru_cache(maxsize=1 << 16)
def token_label(token: str) -> str:
    """The visible form of a token (:func:`token_display`), HTML-escaped; cached, since the same
    vocabulary pieces come back on every prompt."""
    return escape(token_display(token))


def max_abs(
    values: np.ndarray | Sequence[float],
    bos_mask: np.ndarray | None = None,
    exclude_bos: bool = True,
) -> float:
    """``max|v|`` over the values, BOS positions left out when ``exclude_bos``; 0 when empty."""
    a = np.abs(np.asarray(values, dtype=np.float64))
    if exclude_bos and bos_mask is not None:
        a = a[~np.asarray(bos_mask, dtype=bool)]
    a = a[np.isfinite(a)]
    return float(a.max()) if a.size else 0.0


def segment_max(a: np.ndarray, starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Max of ``a`` over each segment ``[starts[i], starts[i] + lengths[i])``; -inf when empty."""
    out = np.full(len(starts), -np.inf)
    ok = np.asarray(lengths) > 0
    if a.size and ok.any():
        out[ok] = np.maximum.reduceat(a, np.asarray(starts)[ok])
    return out


def prompt_scales(
    flat: np.ndarray,
    starts: np.ndarray,
    lengths: np.ndarray,
    bos_mask: np.ndarray,
    normalization: str = "global",
    exclude_bos: bool = True,
) -> np.ndarray:
    """The scale ``max|v|`` of each prompt (rule 3).

    Args:
        flat: ``[n_tokens]`` one neuron's values, prompts back to back.
        starts, lengths: ``[n_prompts]`` where each prompt sits in ``flat`` (contiguous, in order).
        bos_mask: ``[n_tokens]`` True at BOS tokens.
        normalization: ``global`` (every prompt gets the run-wide max) or ``per_prompt``.
    """
    if normalization not in NORMALIZATIONS:
        raise ValueError(f"normalization must be one of {NORMALIZATIONS}, got {normalization!r}")
    a = np.abs(np.asarray(flat, dtype=np.float64))
    a = np.where(np.isfinite(a), a, 0.0)
    if exclude_bos:
        a = np.where(bos_mask, 0.0, a)
    per = np.maximum(segment_max(a, starts, lengths), 0.0)
    if normalization == "global":
        return np.full(len(starts), per.max() if per.size else 0.0)
    return per


def token_cells(
    tokens: Sequence[str],
    token_ids: Sequence[int],
    values: np.ndarray,
    scale: float,
    cfg: HeatmapConfig,
    start: int = 0,
    marked: int | None = None,
) -> list[str]:
    """One HTML cell per token (rules 1, 2 and 4); the tooltip gives ctx_idx, token id, token and
    value (``n/a`` for a NaN value: a token whose activation is not stored).

    Args:
        start: ctx_idx of the first token (when the tokens are a slice of a longer window).
        marked: ctx_idx of a token to outline (an example's own token).
    """
    vals = np.asarray(values, dtype=np.float64)
    op = opacity(vals, scale, cfg.minimum_opacity, cfg.minimum_threshold)
    rgb = colors(vals)
    shown = cfg.show_values & (np.abs(vals) > cfg.minimum_threshold)
    d = int(cfg.value_decimals)
    out = []
    for i, (tok, tid, v, o, (r, g, b), s) in enumerate(
        zip(
            tokens, token_ids, vals.tolist(), op.tolist(), rgb.tolist(), shown.tolist(), strict=True
        ),
        start,
    ):
        label = token_label(str(tok))
        act = f"{v:+.6f}" if v == v else "n/a"
        tip = f"ctx_idx={i} | token_id={tid} | token={label} | activation={act}"
        val = f'<span class="nsh-val">{v:.{d}f}</span>' if s else ""
        cls = "nsh-cell nsh-max" if i == marked else "nsh-cell"
        out.append(
            f'<span class="{cls}" data-ctx="{i}" title="{tip}" style="background:'
            f'rgba({r},{g},{b},{o:.4f})">'
            f'<span class="nsh-tok">{label}</span>{val}</span>'
        )
    return out


def rows_html(cells: list[str], per_row: int) -> str:
    """Token cells wrapped into rows of ``per_row``."""
    n = max(1, int(per_row))
    return "".join(
        '<div class="nsh-row">' + "".join(cells[i : i + n]) + "</div>"
        for i in range(0, len(cells), n)
    )


def render_prompt_html(
    tokens: Sequence[str],
    token_ids: Sequence[int],
    values: np.ndarray | Sequence[float],
    scale: float,
    cfg: HeatmapConfig,
    title: str = "",
    with_css: bool = True,
) -> str:
    """One prompt's heatmap: rows of token cells, tooltip ctx_idx, token_id, token, value."""
    vals = np.asarray(values, dtype=np.float64)
    if not len(tokens) == len(token_ids) == len(vals):
        raise ValueError("tokens, token_ids and values must have the same length")
    head = f'<div class="nsh-title">{escape(title)}</div>' if title else ""
    meta = (
        f'<div class="nsh-meta">max|v|={scale:.6g} ({cfg.normalization}) | tokens={len(vals)}</div>'
    )
    body = rows_html(token_cells(tokens, token_ids, vals, scale, cfg), cfg.tokens_per_row)
    return (CSS if with_css else "") + f'<div class="nsh-heatmap">{head}{meta}{body}</div>'


def render_stacked_html(
    prompts: Sequence[PromptHeat],
    cfg: HeatmapConfig,
    title: str = "",
    subtitle_html: str = "",
    meta: str = "",
) -> str:
    """Every prompt of one neuron, one under the other, each with its own scale.

    ``subtitle_html`` is trusted HTML built by this package (write-score chips); ``title`` and
    ``meta`` are escaped.
    """
    parts = [CSS, f'<div class="nsh-stacked{" nsh-compact" if cfg.compact else ""}">']
    if title:
        parts.append(f'<div class="nsh-title">{escape(title)}</div>')
    parts.append(subtitle_html)
    parts.append(f'<div class="nsh-meta">{escape(meta)} | prompts={len(prompts)}</div>')
    for p in prompts:
        parts.append(f'<div class="nsh-prompt">{escape(p.label)}</div>')
        if not cfg.compact:
            line = f"max|v|={p.scale:.6g} ({cfg.normalization}) | tokens={len(p.values)}"
            parts.append(f'<div class="nsh-meta">{escape(line + p.meta)}</div>')
        cells = token_cells(p.tokens, p.token_ids, p.values, p.scale, cfg)
        parts.append(rows_html(cells, cfg.tokens_per_row))
    parts.append("</div>")
    return "".join(parts)


def chips_html(items: Sequence[dict], positive: bool, n_show: int = 8) -> str:
    """Write-score chips (token and score), green for promoted, red for suppressed tokens."""
    bg = "#d4edda" if positive else "#f8d7da"
    out = []
    for t in list(items)[:n_show]:
        tok = token_label(str(t.get("token", "?")))
        score = float(t.get("score", 0.0))
        out.append(
            f'<span class="nsh-chip" style="background:{bg};padding:1px 5px;border-radius:3px;'
            f'margin:1px;font-size:12px;white-space:pre">{tok} <small>{score:+.3f}</small></span>'
        )
    return " ".join(out)


def write_scores_html(ws: dict, n_show: int = 8) -> str:
    """Two chip lines: what the neuron's output promotes (+) and suppresses (-)."""
    pos = chips_html(ws.get("top_pos", []), True, n_show)
    neg = chips_html(ws.get("top_neg", []), False, n_show)
    return (
        '<div class="nsh-ws" style="line-height:1.9">'
        f'<b style="color:#28a745">promotes +</b> {pos or "<i>none</i>"}<br>'
        f'<b style="color:#dc3545">suppresses -</b> {neg or "<i>none</i>"}</div>'
    )
