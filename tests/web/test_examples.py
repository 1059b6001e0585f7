"""Atlas example rows: context cut, outlined token, full-window expander, samples, escaping."""

from __future__ import annotations

import re

import numpy as np
import pytest

from neuron_signatures.atlas import Example, Interval
from neuron_signatures.web.examples import (
    context_bounds,
    example_html,
    example_label,
    example_values,
    examples_html,
    intervals_html,
)
from neuron_signatures.web.heatmap import HeatmapConfig

CFG = HeatmapConfig(show_values=False)
TOKENS = ["<bos>", "▁a", "▁b", "<script>", "▁d", "▁e", "▁f"]


def example(position: int = 3, acts: list[float] | None = None, value: float = 4.0) -> Example:
    return Example(
        window=5, position=position, document=2, doc_token=position - 1, value=value,
        token_ids=list(range(10, 17)), tokens=TOKENS, acts=acts, meta={"topic": "x"},
    )  # fmt: skip


def alphas(html: str) -> dict[int, float]:
    """ctx_idx -> background opacity of each cell (first occurrence)."""
    out: dict[int, float] = {}
    for ctx, a in re.findall(r'data-ctx="(\d+)"[^>]*rgba\(\d+,\d+,\d+,([0-9.]+)\)', html):
        out.setdefault(int(ctx), float(a))
    return out


@pytest.mark.parametrize(
    ("n", "pos", "ctx", "expected"),
    [
        (7, 3, 1, (2, 5)),
        (7, 0, 2, (0, 3)),
        (7, 6, 2, (4, 7)),
        (7, 3, 0, (3, 4)),
        (7, 3, 99, (0, 7)),
    ],
)
def test_context_bounds(n: int, pos: int, ctx: int, expected: tuple[int, int]) -> None:
    assert context_bounds(n, pos, ctx) == expected


def test_window_row_cuts_context_and_outlines_the_token() -> None:
    acts = [9.0, 0.0, 1.0, 4.0, -2.0, 0.5, 0.25]
    html = example_html(example(acts=acts), 4.0, CFG, context=1, rank=1)
    summary = html.split("</summary>")[0]
    assert re.findall(r'data-ctx="(\d+)"', summary) == ["2", "3", "4"]  # ±1 around position 3
    full = html.split("</summary>")[1]
    assert re.findall(r'data-ctx="(\d+)"', full) == [str(i) for i in range(7)]  # the expander
    assert html.startswith('<details class="nsa-ex">')
    marked = re.findall(r'class="nsh-cell nsh-max" data-ctx="(\d+)" title="([^"]*)"', html)
    assert (
        marked
        == [("3", "ctx_idx=3 | token_id=13 | token=&lt;script&gt; | activation=+4.000000")] * 2
    )
    a = alphas(summary)
    assert a[3] == pytest.approx(1.0) and a[2] == pytest.approx(
        0.05 + 0.95 * np.log10(1 + 9 / 4), abs=1e-4
    )
    assert "rgba(251,146,60," in summary  # the negative neighbour takes the negative colour
    assert "<script>" not in html and "&lt;script&gt;" in html
    assert "#1 | +4 on" in html and "doc 2 (topic=x)" in html


def test_short_window_needs_no_expander() -> None:
    html = example_html(example(acts=[0.0] * 7), 1.0, CFG, context=10)
    assert "<details" not in html and len(re.findall(r"data-ctx=", html)) == 7


def test_sample_colours_only_its_own_token() -> None:
    ex = example(position=2, value=-3.0)
    vals = example_values(ex)
    assert np.isnan(vals[[0, 1, 3, 4, 5, 6]]).all() and vals[2] == -3.0
    html = example_html(ex, 6.0, CFG, context=2)
    a = alphas(html)
    assert a[2] > 0 and all(v == 0 for k, v in a.items() if k != 2)
    assert "activation=n/a" in html and "activation=-3.000000" in html
    assert "rgba(251,146,60," in html  # negative colour for the sampled token


def test_sections() -> None:
    exs = [example(acts=[0.0, 0, 0, 4, 0, 0, 0]), example(acts=[0.0, 0, 0, 2, 0, 0, 0], value=2)]
    html = examples_html(exs, 4.0, CFG, context=1)
    assert html.count('class="nsa-label"') == 2 and "#2 | +2 on" in html
    iv = [
        Interval(lo=-1, hi=0.5, count=30, fraction=0.3, samples=[example(value=0.1)]),
        Interval(lo=0.5, hi=4, count=70, fraction=0.7, samples=[]),
    ]
    html = intervals_html(iv, 4.0, CFG, context=1)
    labels = re.findall(r'class="nsa-interval">([^<]*)<', html)
    assert labels == [
        "interval 0.5–4 contains 70.0% of tokens",
        "interval -1–0.5 contains 30.0% of tokens",
    ]
    assert "no samples kept" in html


def test_label_without_meta() -> None:
    ex = example(acts=None)
    ex.meta = {}
    assert example_label(None, ex) == "+4 on '<script>' | doc 2"
