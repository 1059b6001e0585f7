"""Plotly figures: hover labels escape tokens, many prompts share a trace, chart points map back."""

from __future__ import annotations

import numpy as np
import pytest

from neuron_signatures.web import charts
from neuron_signatures.web.selection import InfluenceTable


def _table() -> InfluenceTable:
    return InfluenceTable(
        layer=np.array([0, 1, 1]),
        neuron=np.array([5, 6, 7]),
        rank=np.array([1, 2, 3]),
        ctx_idx=np.array([4, 4, 4]),
        activation=np.array([0.1, 0.2, 0.3]),
        influence=np.array([0.5, -0.2, 0.1]),
        rows=[{}, {}, {}],
    )


def test_line_trace_hover_escapes_tokens() -> None:
    t = charts.line_trace("p<1>", ["<bos>", "▁<b>"], [2, 9], np.array([1.0, -0.5]), "lines")
    assert t["hovertext"][1] == (
        "prompt=p&lt;1&gt;<br>ctx_idx=1<br>token_id=9<br>token= &lt;b&gt;<br>act=-0.500000"
    )
    assert t["x"].tolist() == [0, 1] and t["name"] == "p&lt;1&gt;"


@pytest.mark.parametrize("pid", ["<b>x</b>", "<script>alert(1)</script>", 'a"b&c <br> d'])
def test_prompt_ids_show_as_text_in_titles_and_legends(pid: str) -> None:
    """Plotly renders <b>, <br>, <a>... in titles and legend names: a prompt id must not."""
    shown = charts.plotly_text(pid)
    assert "<" not in shown and ">" not in shown
    trace = charts.line_trace(pid, ["a", "b"], [1, 2], np.array([1.0, 2.0]), "lines")
    other = charts.line_trace("p2", ["a", "b"], [1, 2], np.array([0.0, 1.0]), "lines")
    overlay = charts.overlay_figure([trace, other], f"Overlay of {pid}")
    single = charts.prompt_figure(pid, ["a", "b"], [1, 2], np.array([1.0, 2.0]))
    for text in (overlay.data[0].name, overlay.layout.title.text, single.layout.title.text,
                 single.data[0].hovertext[0]):  # fmt: skip
        assert "<b>" not in text and "<script>" not in text and shown in text
        assert "&quot;" not in text  # plotly does not decode &quot;: it would show as is
    # plotly decodes these entities back to the typed characters
    assert shown.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&") == pid


def test_overlay_merges_many_prompts() -> None:
    traces = [charts.line_trace(f"p{i}", ["a", "b"], [1, 2], np.array([i, -i]), "lines")
              for i in range(charts.MAX_TRACES + 1)]  # fmt: skip
    assert len(charts.overlay_figure(traces[:3], "t").data) == 3
    merged = charts.overlay_figure(traces, "t").data
    assert len(merged) == 1
    y = np.asarray(merged[0].y, dtype=float)
    assert len(y) == 3 * len(traces) and np.isnan(y[2::3]).all()  # a gap after each prompt
    assert y[3:5].tolist() == [1.0, -1.0]
    assert "prompt=p1" in merged[0].hovertext[3]


@pytest.mark.parametrize("kind", charts.CHART_KINDS)
def test_influence_figure_points_carry_the_candidate(kind: str) -> None:
    kept = np.array([0, 2])  # candidates 0 and 1 are records 0 and 2
    fig = charts.influence_figure(_table(), kept, kind, "abs_influence", selected=1)
    main, star = fig.data
    assert np.asarray(main.customdata).tolist() == [[0, 0, 5], [1, 1, 7]]
    assert np.asarray(star.customdata).tolist() == [[1, 1, 7]]
    assert star.marker.symbol == "star"
    assert fig.layout.clickmode == "event+select" and fig.layout.dragmode == "lasso"


def test_influence_figure_axes() -> None:
    t, kept = _table(), np.array([0, 1, 2])
    fig = charts.influence_figure(t, kept, "act_vs_inf", "abs_influence", None)
    assert len(fig.data) == 1
    assert list(fig.data[0].x) == [0.1, 0.2, 0.3] and list(fig.data[0].y) == [0.5, -0.2, 0.1]
    bars = charts.influence_figure(t, kept, "rank_bars", "abs_influence", None).data[0]
    assert list(bars.x) == [1, 2, 3] and list(bars.y) == [0.5, 0.2, 0.1]
    scatter = charts.influence_figure(t, kept, "layer_scatter", "influence", None).data[0]
    assert np.all(np.abs(np.asarray(scatter.x) - t.layer) <= 0.3)  # jittered around the layer
    with pytest.raises(ValueError):
        charts.influence_figure(t, kept, "pie", "influence", None)


def test_histogram_figure_shows_the_exact_bins() -> None:
    from neuron_signatures.atlas import bins

    edges = bins.edges()
    values = np.array([-0.3, -0.3, 0.0, 0.2, 0.2, 0.2, 5.0], dtype=np.float32)
    counts = np.bincount(bins.bin_of(values), minlength=bins.n_bins())
    fig = charts.histogram_figure(edges, counts, "L1/N2 <b>")
    bar = fig.data[0]
    shown = np.flatnonzero(counts)
    assert bar.x.tolist() == list(range(shown[0], shown[-1] + 1))  # first to last non-empty bin
    y = np.nan_to_num(np.asarray(bar.y, dtype=float))
    assert y.sum() == len(values) and (y[bar.x.tolist().index(shown[0])]) == 2
    neg = bar.x < bins.n_bins() // 2
    assert all(c == "rgb(251,146,60)" for c in np.asarray(bar.marker.color)[neg])
    assert all(c == "rgb(52,211,153)" for c in np.asarray(bar.marker.color)[~neg])
    assert fig.layout.yaxis.type == "log"
    assert "half-octave bins" in fig.layout.xaxis.title.text
    assert fig.layout.title.text == "L1/N2 &lt;b&gt;"
    lo = bins.bin_of(np.array([0.2], dtype=np.float32))[0]
    assert bar.hovertext[bar.x.tolist().index(lo)] == "[0.1875, 0.25): 3 tokens"
    assert len(fig.layout.shapes) == 1  # the dotted line at 0


def test_histogram_figure_of_an_empty_neuron() -> None:
    fig = charts.histogram_figure([-1.0, 0.0, 1.0], [0, 0, 0, 0], "empty")
    assert len(fig.data[0].x) == 0


def every_figure() -> dict[str, object]:
    trace = charts.line_trace("p", ["a", "b"], [1, 2], np.array([1.0, 2.0]), "lines")
    t = _table()
    return {
        "overlay": charts.overlay_figure([trace], "Overlay across prompts (1 of 1)"),
        "prompt": charts.prompt_figure("p", ["a", "b"], [1, 2], np.array([1.0, 2.0])),
        **{
            kind: charts.influence_figure(t, np.arange(3), kind, "abs_influence", 0)
            for kind in charts.CHART_KINDS
        },
        "histogram": charts.histogram_figure([-1.0, 0.0, 1.0], [1, 2, 3, 4], "L17/N1152"),
    }


@pytest.mark.parametrize("name", list(every_figure()))
def test_titles_sit_below_the_mode_bar(name: str) -> None:
    """Plotly's mode bar covers the figure's top-right corner (its top ``MODEBAR_PX``): every
    title is anchored to the top of the plot area, and the top margin holds the mode bar's strip
    and the title's line above it."""
    fig = every_figure()[name]
    title, margin = fig.layout.title, fig.layout.margin  # type: ignore[attr-defined]
    assert title.text
    assert (title.yref, title.y, title.yanchor) == ("paper", 1, "bottom")
    assert (title.xref, title.x, title.xanchor) == ("paper", 0, "left")
    line = 20  # plotly's default title font (17 px) and its line height
    assert margin.t >= charts.MODEBAR_PX + title.pad.b + line
