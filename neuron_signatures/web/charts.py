"""Plotly figures of the web app: activation lines per prompt, the influence distribution and
the histogram of an atlas neuron.

Figures are built from plain dicts (no per-trace validation cost). Plotly renders a subset of HTML
(``<b>``, ``<br>``, ``<a>``...) in titles, legend entries and hover labels, so every prompt id and
token placed in one goes through :func:`plotly_text`.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import plotly.graph_objects as go

from ..heat import NEGATIVE_RGB, POSITIVE_RGB
from ..tokens import token_display
from .selection import InfluenceTable

CHART_KINDS = ("layer_scatter", "act_vs_inf", "rank_bars")
MAX_TRACES = 30  # more prompts than this share one trace
# Plotly's mode bar (zoom, pan, lasso...) sits in the top-right corner of the figure, over its
# top ~30 px: the top margin leaves it a strip of its own, and titles sit below that strip, just
# above the plot area, so no title runs under the bar however long it is or however narrow the
# column.
MODEBAR_PX = 32
_MARGIN = {"l": 10, "r": 10, "t": MODEBAR_PX + 40, "b": 10}


def title_layout(text: str) -> dict:
    """A left-aligned title anchored to the top of the plot area (below the mode bar's strip);
    ``text`` is used as given (escape it with :func:`plotly_text` first)."""
    return {
        "text": text,
        "x": 0,
        "xref": "paper",
        "xanchor": "left",
        "y": 1,
        "yref": "paper",
        "yanchor": "bottom",
        "pad": {"b": 12},
    }


def plotly_text(text: object) -> str:
    """Text shown as typed in a plotly title, legend or hover label: ``&``, ``<`` and ``>`` become
    entities plotly decodes (``html.escape``'s ``&quot;`` is not one of them: it would show)."""
    return str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _hover(
    prompt_id: str, tokens: Sequence[str], token_ids: Sequence[int], values: np.ndarray
) -> list[str]:
    pid = plotly_text(prompt_id)
    return [
        f"prompt={pid}<br>ctx_idx={i}<br>token_id={tid}<br>token={plotly_text(token_display(t))}"
        f"<br>act={v:+.6f}"
        for i, (t, tid, v) in enumerate(zip(tokens, token_ids, values.tolist(), strict=True))
    ]


def line_trace(
    prompt_id: str, tokens: Sequence[str], token_ids: Sequence[int], values: np.ndarray, mode: str
) -> dict:
    """One prompt's activation against ``ctx_idx``, hover showing the token."""
    return {
        "type": "scatter",
        "x": np.arange(len(values)),
        "y": np.asarray(values, dtype=np.float64),
        "mode": mode,
        "name": plotly_text(prompt_id),
        "hovertext": _hover(prompt_id, tokens, token_ids, np.asarray(values)),
        "hoverinfo": "text",
    }


def merged_trace(traces: list[dict]) -> dict:
    """Many prompts as one trace, each line cut from the next by a gap (plotly draws thousands of
    separate traces slowly); hover still names the prompt and token."""
    gap = np.array([np.nan])
    x = np.concatenate([part for t in traces for part in (t["x"], gap)])
    y = np.concatenate([part for t in traces for part in (t["y"], gap)])
    hover = [h for t in traces for h in (*t["hovertext"], "")]
    return {
        "type": "scatter",
        "x": x,
        "y": y,
        "mode": "lines",
        "name": f"{len(traces)} prompts",
        "hovertext": hover,
        "hoverinfo": "text",
        "line": {"width": 1, "color": "rgba(31,119,180,0.35)"},
    }


def overlay_figure(traces: list[dict], title: str) -> go.Figure:
    """One line per prompt for the same neuron (merged into one trace above ``MAX_TRACES``)."""
    data = traces if len(traces) <= MAX_TRACES else [merged_trace(traces)]
    fig = go.Figure(data=data)
    fig.update_layout(
        title=title_layout(plotly_text(title)),
        xaxis_title="ctx_idx",
        yaxis_title="activation (hook_post)",
        height=420,
        margin=_MARGIN,
        showlegend=len(data) > 1,
    )
    return fig


def prompt_figure(
    prompt_id: str, tokens: Sequence[str], token_ids: Sequence[int], values: np.ndarray
) -> go.Figure:
    """The selected prompt only, with markers."""
    fig = go.Figure(data=[line_trace(prompt_id, tokens, token_ids, values, "lines+markers")])
    fig.update_layout(
        title=title_layout(f"Activation vs ctx_idx ({plotly_text(prompt_id)})"),
        xaxis_title="ctx_idx",
        yaxis_title="activation (hook_post)",
        height=420,
        margin=_MARGIN,
    )
    return fig


def _axes(
    table: InfluenceTable, kept: np.ndarray, kind: str, y_metric: str
) -> tuple[np.ndarray, np.ndarray, str, str, str]:
    """``(x, y, x title, y title, chart title)`` of an influence chart kind."""
    y = table.metric(y_metric)[kept]
    if kind == "layer_scatter":  # jitter so neurons of one layer do not hide each other
        x = table.layer[kept] + np.random.default_rng(0).uniform(-0.3, 0.3, len(kept))
        return x, y, "layer", y_metric, f"Layer vs {y_metric}"
    if kind == "act_vs_inf":
        act, inf = table.activation[kept], table.influence[kept]
        return act, inf, "activation", "influence", "Activation vs influence"
    if kind == "rank_bars":
        return table.rank[kept], y, "rank", y_metric, f"{y_metric} by rank"
    raise ValueError(f"chart kind must be one of {CHART_KINDS}")


def influence_figure(
    table: InfluenceTable, kept: np.ndarray, kind: str, y_metric: str, selected: int | None
) -> go.Figure:
    """The influence distribution of the kept records (``kept[j]`` is candidate ``j``).

    Each point's ``customdata`` is ``[candidate_index, layer, neuron]`` so a click or a lasso maps
    back to a candidate. The selected candidate is drawn again as a red star.
    """
    x, y, x_title, y_title, title = _axes(table, kept, kind, y_metric)
    lay = table.layer[kept]
    custom = np.stack([np.arange(len(kept)), lay, table.neuron[kept]], axis=1)
    cols = (
        table.rank[kept],
        lay,
        table.neuron[kept],
        table.activation[kept],
        table.influence[kept],
    )
    text = [
        f"#{r} L{a} N{b}<br>act={c:.4g}<br>inf={d:+.4g}"
        for r, a, b, c, d in zip(*(c.tolist() for c in cols), strict=True)
    ]
    marker = {"color": lay, "colorscale": "Viridis", "colorbar": {"title": {"text": "layer"}}}
    base = {"x": x, "y": y, "customdata": custom, "hovertext": text, "hoverinfo": "text"}
    if kind == "rank_bars":
        traces = [{"type": "bar", "marker": marker, **base}]
    else:
        marker.update(size=8, opacity=0.75)
        traces = [{"type": "scatter", "mode": "markers", "marker": marker, **base}]
    if selected is not None and 0 <= selected < len(kept):
        star = {"size": 16, "color": "red", "symbol": "star", "line": {"width": 1}}
        one = slice(selected, selected + 1)
        traces.append({"type": "scatter", "mode": "markers", "marker": star, "x": x[one],
                       "y": y[one], "customdata": custom[one], "hoverinfo": "text",
                       "hovertext": ["selected: " + text[selected]]})  # fmt: skip
    fig = go.Figure(data=traces)
    fig.update_layout(
        title=title_layout(f"{title} ({len(kept)} neurons)"), xaxis_title=x_title,
        yaxis_title=y_title,
        height=450, margin=_MARGIN, clickmode="event+select", dragmode="lasso", showlegend=False,
    )  # fmt: skip
    return fig


def histogram_figure(edges: Sequence[float], counts: Sequence[int], title: str) -> go.Figure:
    """The atlas's exact histogram: one bar per non-empty half-octave bin, log-count y.

    The bins (``edges [n_bins - 1]``, ``counts [n_bins]``) grow geometrically away from 0, so the
    x axis is the bin's rank, labelled with its edges; bars below 0 take the negative colour of
    the heat rule, bars at or above 0 the positive one.
    """
    c = np.asarray(counts, dtype=np.int64)
    e = np.concatenate([[-np.inf], np.asarray(edges, dtype=np.float64), [np.inf]])
    nz = np.flatnonzero(c)
    lo, hi = (int(nz[0]), int(nz[-1]) + 1) if nz.size else (0, 0)
    idx = np.arange(lo, hi)
    left, right = e[idx], e[idx + 1]
    neg = right <= 0
    rgb = np.where(neg[:, None], np.array(NEGATIVE_RGB), np.array(POSITIVE_RGB))
    hover = [
        f"{'(' if n else '['}{a:.4g}, {b:.4g}{']' if n else ')'}: {k:,} tokens"
        for a, b, k, n in zip(
            left.tolist(), right.tolist(), c[idx].tolist(), neg.tolist(), strict=True
        )
    ]
    fig = go.Figure(
        data=[{"type": "bar", "x": idx, "y": np.where(c[idx] > 0, c[idx], np.nan),
               "marker": {"color": [f"rgb({r},{g},{b})" for r, g, b in rgb.tolist()]},
               "hovertext": hover, "hoverinfo": "text"}]
    )  # fmt: skip
    ticks = idx[:: max(1, len(idx) // 8)]  # a tick at each shown bin's left edge
    zero = int(np.searchsorted(e, 0.0))  # bars >= zero are at or above 0
    if lo < zero < hi:
        fig.add_vline(x=zero - 0.5, line={"width": 1, "dash": "dot", "color": "#888"})
    fig.update_layout(
        title=title_layout(plotly_text(title)), height=340, margin=_MARGIN, bargap=0.05,
        yaxis={"type": "log", "title": "tokens (log)", "dtick": 1},
        xaxis={"title": "activation (half-octave bins)", "tickvals": ticks - 0.5,
               "ticktext": [f"{e[i]:.3g}" if np.isfinite(e[i]) else "-inf" for i in ticks]},
    )  # fmt: skip
    return fig
