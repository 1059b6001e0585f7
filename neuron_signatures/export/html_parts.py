"""The pieces of the static HTML neuron page (pure: atlas records in, HTML strings out).

1. Heatmap rows colour each token with the shared heat rule of :mod:`neuron_signatures.heat`
   (green >= 0, orange below, opacity ``min_op + log10(1 + 9 r) (1 - min_op)``), so colours match
   the web app; one scale per section (the top value, the bottom value, the largest ``|value|``).
   Hovering a token shows its position, text and value (``title``); ``data-v`` holds the value.
2. A row shows ``CONTEXT`` tokens either side of the example's own token (outlined); clicking it
   shows the whole window (a hidden checkbox and CSS: each token is written once, no script).
3. The histogram is an inline SVG: one bar per non-empty half-octave bin, log-count height.
4. Every piece of text that comes from data (tokens, labels, metadata) is HTML-escaped.
"""

from __future__ import annotations

import html
import math
from collections.abc import Sequence

import numpy as np

from ..atlas.record import Example, Interval, NeuronAtlas, NeuronStats, WriteScore
from ..heat import NEGATIVE_RGB, POSITIVE_RGB, colors, opacity
from ..tokens import token_display

CONTEXT = 12  # tokens shown either side of an example's own token
SVG_W, SVG_H, PAD = 640, 220, 30
MORE = '<span class="more">…</span>'  # tokens hidden on this side of the row


def esc(text: object) -> str:
    """HTML-escape any text, quotes included (safe in attributes too)."""
    return html.escape(str(text), quote=True)


def anchor(layer: int, index: int) -> str:
    return f"L{layer}-N{index}"


def fmt(x: float, spec: str = ".4g") -> str:
    return format(x, spec) if math.isfinite(x) else "n/a"


def token_cells(
    tokens: Sequence[str], values: np.ndarray, scale: float, marked: int, lo: int, hi: int
) -> str:
    """One ``<span>`` per token: background from the heat rule, value on hover; the cells
    outside ``[lo, hi)`` are hidden until the row is opened (class ``o``)."""
    op = opacity(values, scale)
    rgb = colors(values)
    out = []
    for i, (tok, v, o, (r, g, b)) in enumerate(
        zip(tokens, values.tolist(), op.tolist(), rgb.tolist(), strict=True)
    ):
        if i == lo and lo > 0:
            out.append(MORE)
        shown = esc(token_display(tok))
        value = f"{v:+.6g}" if math.isfinite(v) else "n/a (not stored)"
        data = f' data-v="{v!r}"' if math.isfinite(v) else ""
        cls = "t mark" if i == marked else ("t" if lo <= i < hi else "t o")
        out.append(
            f'<span class="{cls}" data-ctx="{i}"{data} title="{i} · {shown} · {value}" '
            f'style="background:rgba({r},{g},{b},{o:.4f})">{shown}</span>'
        )
        if i == hi - 1 and hi < len(tokens):
            out.append(MORE)
    return "".join(out)


def example_values(ex: Example) -> np.ndarray:
    """``[len(tokens)]``: the window's activations, or NaN but on an interval sample's token."""
    if ex.acts is not None:
        return np.asarray(ex.acts[: len(ex.tokens)], dtype=np.float64)
    vals = np.full(len(ex.tokens), np.nan)
    vals[ex.position] = ex.value
    return vals


def example_label(ex: Example, rank: int | None) -> str:
    tok = token_display(ex.tokens[ex.position]) if 0 <= ex.position < len(ex.tokens) else ""
    meta = ", ".join(f"{k}={v}" for k, v in ex.meta.items())
    head = [f"#{rank}"] if rank is not None else []
    parts = [*head, f"{ex.value:+.4g} on {tok!r}", f"doc {ex.document} token {ex.doc_token}"]
    return " | ".join(parts) + (f" ({meta})" if meta else "")


def example_html(ex: Example, scale: float, key: str, rank: int | None = None) -> str:
    """The example's label and its row: ``CONTEXT`` tokens either side of its own token, the
    whole window once clicked (a hidden checkbox ``key`` toggles it: no script needed)."""
    vals = example_values(ex)
    n = len(ex.tokens)
    lo, hi = max(0, ex.position - CONTEXT), min(n, ex.position + CONTEXT + 1)
    cells = token_cells(ex.tokens, vals, scale, ex.position, lo, hi)
    label = esc(example_label(ex, rank))
    if lo == 0 and hi == n:  # nothing hidden
        return (
            f'<div class="ex"><div class="lbl" data-value="{ex.value!r}">{label}</div>'
            f'<div class="toks">{cells}</div></div>'
        )
    return (
        f'<div class="ex"><input type="checkbox" class="tg" id="{key}">'
        f'<label class="lbl" for="{key}" data-value="{ex.value!r}">{label}</label>'
        f'<label class="toks" for="{key}">{cells}</label></div>'
    )


def examples_html(examples: Sequence[Example], scale: float, key: str, kind: str) -> str:
    if not examples:
        return '<p class="note">none kept</p>'
    body = "".join(
        example_html(ex, scale, f"{key}-{kind}{i}", i + 1) for i, ex in enumerate(examples)
    )
    return f'<div class="examples {kind}">{body}</div>'


def intervals_html(intervals: Sequence[Interval], scale: float, key: str) -> str:
    """Each interval's label and its samples, highest interval first."""
    parts = ['<div class="intervals">']
    for j, iv in reversed(list(enumerate(intervals))):
        parts.append(
            f'<div class="iv" data-lo="{iv.lo!r}" data-hi="{iv.hi!r}" '
            f'data-fraction="{iv.fraction!r}">{esc(iv.label)}</div>'
        )
        if not iv.samples:
            parts.append('<p class="note">no samples kept</p>')
        parts.extend(example_html(ex, scale, f"{key}-iv{j}-{k}") for k, ex in enumerate(iv.samples))
    parts.append("</div>")
    return "".join(parts)


def stats_html(s: NeuronStats) -> str:
    """The statistics header; skewness and kurtosis when the atlas has them."""
    items = [
        ("tokens seen", "count", s.count, f"{s.count:,}"),
        ("density (> 0)", "frac_positive", s.frac_positive, fmt(s.frac_positive, ".2%")),
        (
            f"density (> {s.threshold:g})",
            "frac_above_threshold",
            s.frac_above_threshold,
            fmt(s.frac_above_threshold, ".2%"),
        ),
        ("max", "max", s.max, fmt(s.max)),
        ("min", "min", s.min, fmt(s.min)),
        ("mean", "mean", s.mean, fmt(s.mean)),
        ("std", "std", s.std, fmt(s.std)),
    ]
    for name in ("skewness", "kurtosis"):
        v = getattr(s, name, None)
        if isinstance(v, float) and math.isfinite(v):
            items.append((name, name, v, fmt(v)))
    cells = "".join(
        f'<div><dt>{esc(label)}</dt><dd data-stat="{key}" data-v="{value!r}">{esc(text)}</dd></div>'
        for label, key, value, text in items
    )
    return f'<dl class="stats">{cells}</dl>'


def logits_html(top: Sequence[WriteScore], bottom: Sequence[WriteScore]) -> str:
    """The tokens the neuron's output direction promotes (+) and suppresses (−) the most."""
    if not top and not bottom:
        return '<p class="note">This atlas has no write scores (built with --write_scores_k 0).</p>'

    def table(scores: Sequence[WriteScore], cls: str, title: str) -> str:
        rows = "".join(
            f'<tr><td class="tok">{esc(token_display(w.token))}</td>'
            f'<td class="num" data-v="{w.score!r}" title="token id {w.token_id}">'
            f"{w.score:+.4g}</td></tr>"
            for w in scores
        )
        return f'<table class="logits {cls}"><caption>{title}</caption>{rows}</table>'

    return (
        '<div class="logit-cols">'
        + table(top, "pos", "promotes (+)")
        + table(bottom, "neg", "suppresses (−)")
        + "</div>"
    )


def histogram_svg(rec: NeuronAtlas) -> str:
    """Bars of the exact histogram between the first and last non-empty bin, log-count height;
    x is the bin's rank (the bins grow geometrically away from 0), ticks at some left edges."""
    c = np.asarray(rec.histogram_counts, dtype=np.int64)
    e = np.concatenate([[-np.inf], np.asarray(rec.histogram_edges, dtype=np.float64), [np.inf]])
    nz = np.flatnonzero(c)
    if not nz.size:
        return '<p class="note">no tokens counted</p>'
    idx = np.arange(int(nz[0]), int(nz[-1]) + 1)
    top = math.log10(1 + int(c[idx].max()))
    w = (SVG_W - 2 * PAD) / len(idx)
    bars, ticks = [], []
    for j, i in enumerate(idx.tolist()):
        left, right, k = float(e[i]), float(e[i + 1]), int(c[i])
        neg = right <= 0
        r, g, b = NEGATIVE_RGB if neg else POSITIVE_RGB
        h = (SVG_H - 2 * PAD) * math.log10(1 + k) / top
        x = PAD + j * w
        span = f"({left:.4g}, {right:.4g}]" if neg else f"[{left:.4g}, {right:.4g})"
        bars.append(
            f'<rect class="bar" data-count="{k}" x="{x:.2f}" y="{SVG_H - PAD - h:.2f}" '
            f'width="{max(w - 1, 1):.2f}" height="{h:.2f}" fill="rgb({r},{g},{b})">'
            f"<title>{esc(span)}: {k:,} tokens</title></rect>"
        )
        if j % max(1, len(idx) // 8) == 0:
            label = f"{left:.3g}" if math.isfinite(left) else "-inf"
            ticks.append(
                f'<text x="{x:.2f}" y="{SVG_H - PAD + 14}" class="tick">{esc(label)}</text>'
            )
    axis = (
        f'<line x1="{PAD}" y1="{SVG_H - PAD}" x2="{SVG_W - PAD}" y2="{SVG_H - PAD}" class="axis"/>'
    )
    zero = int(np.searchsorted(e, 0.0))  # bars from this bin on are at or above 0
    if idx[0] < zero <= idx[-1]:
        x0 = PAD + (zero - idx[0]) * w - 0.5
        axis += f'<line x1="{x0:.2f}" y1="{PAD}" x2="{x0:.2f}" y2="{SVG_H - PAD}" class="zero"/>'
    title = f"activations over {rec.stats.count:,} tokens (log-count bars, half-octave bins)"
    return (
        f'<svg class="hist" viewBox="0 0 {SVG_W} {SVG_H}" width="{SVG_W}" height="{SVG_H}" '
        f'role="img" aria-label="{esc(title)}"><text x="{PAD}" y="16" class="cap">'
        f"{esc(title)}</text>{''.join(bars)}{axis}{''.join(ticks)}</svg>"
    )


def neuron_body(rec: NeuronAtlas) -> str:
    """Histogram, logits, top / bottom examples and interval samples of one neuron."""
    top_scale = abs(rec.top[0].value) if rec.top else 0.0
    bottom_scale = abs(rec.bottom[0].value) if rec.bottom else 0.0
    whole = max(abs(rec.stats.max), abs(rec.stats.min)) if rec.stats.count else 0.0
    key = anchor(rec.layer, rec.index)
    return (
        '<div class="two">'
        f'<div class="panel">{histogram_svg(rec)}</div>'
        f'<div class="panel"><h3>Top ± logits</h3>{logits_html(rec.write_top, rec.write_bottom)}'
        "</div></div>"
        f"<h3>Top activations ({len(rec.top)})</h3>"
        f'<p class="note">The token that ranked is outlined, {CONTEXT} tokens either side; click '
        f"a row for the whole window, hover a token for its value. One scale: {top_scale:.4g}.</p>"
        + examples_html(rec.top, top_scale, key, "top")
        + f"<h3>Bottom activations ({len(rec.bottom)})</h3>"
        f'<p class="note">Most negative first; one scale: {bottom_scale:.4g}.</p>'
        + examples_html(rec.bottom, bottom_scale, key, "bottom")
        + f"<h3>Interval samples ({len(rec.intervals)} intervals)</h3>"
        '<p class="note">Uniform samples of the tokens in each interval of near-equal count; only '
        f"the sampled token's value is stored (one scale: {whole:.4g}).</p>"
        + intervals_html(rec.intervals, whole, key)
    )
