"""Heatmap rules against hand-computed values: opacity, colour, scales, escaping, HTML."""

from __future__ import annotations

import re

import numpy as np
import pytest

from neuron_signatures.web.heatmap import (
    NEGATIVE_RGB,
    POSITIVE_RGB,
    HeatmapConfig,
    PromptHeat,
    colors,
    escape,
    max_abs,
    opacity,
    prompt_scales,
    render_prompt_html,
    render_stacked_html,
    segment_max,
    write_scores_html,
)

# min_op = 0.05: op = 0.05 + 0.95 * log10(1 + 9 r)
# r = 0.25 -> log10(3.25) = 0.5118834 -> 0.5362892
# r = 0.50 -> log10(5.50) = 0.7403627 -> 0.7533446
OP_QUARTER, OP_HALF = 0.5362892, 0.7533446


def test_opacity_hand_values() -> None:
    op = opacity([2.0, 8.0, 16.0, 0.0, 1e-5, -4.0], 8.0)
    assert op == pytest.approx([OP_QUARTER, 1.0, 1.0, 0.0, 0.0, OP_HALF], abs=1e-6)


def test_opacity_minimum_opacity_and_threshold() -> None:
    # min_op = 0.2: 0.2 + 0.8 * log10(3.25) = 0.6095067
    assert opacity([2.0], 8.0, minimum_opacity=0.2)[0] == pytest.approx(0.6095067, abs=1e-6)
    # at or below the threshold: not highlighted
    assert opacity([0.5, 0.50001], 8.0, minimum_threshold=0.5).tolist()[0] == 0.0
    assert opacity([0.5, 0.50001], 8.0, minimum_threshold=0.5)[1] > 0.05


def test_opacity_zero_scale_and_nan() -> None:
    assert opacity([1.0, -3.0], 0.0).tolist() == [0.0, 0.0]
    assert opacity([np.nan], 1.0).tolist() == [0.0]
    # per-value scales broadcast
    assert opacity([2.0, 2.0], np.array([8.0, 4.0])) == pytest.approx(
        [OP_QUARTER, OP_HALF], abs=1e-6
    )


def test_colors_by_sign() -> None:
    assert colors([1.0, 0.0, -1.0]).tolist() == [list(POSITIVE_RGB)] * 2 + [list(NEGATIVE_RGB)]
    assert POSITIVE_RGB == (52, 211, 153) and NEGATIVE_RGB == (251, 146, 60)


def test_escape() -> None:
    assert escape("<script>\"&'") == "&lt;script&gt;&quot;&amp;&#x27;"


def test_max_abs_bos() -> None:
    v, bos = [50.0, 1.0, -4.0], np.array([True, False, False])
    assert max_abs(v, bos) == 4.0
    assert max_abs(v, bos, exclude_bos=False) == 50.0
    assert max_abs([], None) == 0.0


def test_segment_max_empty_segment() -> None:
    a = np.array([1.0, 5.0, 2.0, 7.0])
    out = segment_max(a, np.array([0, 2, 2]), np.array([2, 0, 2]))
    assert out[0] == 5.0 and out[1] == -np.inf and out[2] == 7.0


def test_prompt_scales_modes() -> None:
    flat = np.array([50.0, 1.0, 2.0, -4.0, 50.0, 8.0, -1.0])
    starts, lengths = np.array([0, 4]), np.array([4, 3])
    bos = np.array([True, False, False, False, True, False, False])
    assert prompt_scales(flat, starts, lengths, bos, "global").tolist() == [8.0, 8.0]
    assert prompt_scales(flat, starts, lengths, bos, "per_prompt").tolist() == [4.0, 8.0]
    no_bos = prompt_scales(flat, starts, lengths, bos, "per_prompt", exclude_bos=False)
    assert no_bos.tolist() == [50.0, 50.0]
    with pytest.raises(ValueError):
        prompt_scales(flat, starts, lengths, bos, "bogus")


def _alphas(html: str) -> dict[int, float]:
    found = re.findall(r'data-ctx="(\d+)"[^>]*rgba\(\d+,\d+,\d+,([0-9.]+)\)', html)
    return {int(c): float(a) for c, a in found}


def test_render_prompt_html_cells_tooltip_escaping() -> None:
    tokens = ["<bos>", "▁The", "<script>", "a\nb"]
    html = render_prompt_html(tokens, [2, 10, 11, 12], [50.0, 2.0, -4.0, 0.0], 8.0, HeatmapConfig())
    assert html.count('class="nsh-cell"') == 4
    assert "<script>" not in html.replace("<style>", "")
    assert "&lt;script&gt;" in html
    assert 'title="ctx_idx=1 | token_id=10 | token= The | activation=+2.000000"' in html
    assert "a\\nb" in html  # newline shown as a visible escape
    alphas = _alphas(html)
    assert alphas[0] == 1.0 and alphas[3] == 0.0  # BOS clipped to full, zero not highlighted
    assert alphas[1] == pytest.approx(OP_QUARTER, abs=1e-4)
    assert alphas[2] == pytest.approx(OP_HALF, abs=1e-4)
    assert "rgba(251,146,60," in html and "rgba(52,211,153," in html
    assert '<span class="nsh-val">2.00</span>' in html


def test_render_prompt_html_options() -> None:
    cfg = HeatmapConfig(show_values=False, tokens_per_row=2)
    html = render_prompt_html(["a", "b", "c"], [1, 2, 3], [1.0, 2.0, 3.0], 3.0, cfg)
    assert "nsh-val" not in html.replace(".nsh-val", "")
    assert html.count('<div class="nsh-row">') == 2
    html = render_prompt_html(["a"], [1], [1.23456], 3.0, HeatmapConfig(value_decimals=4))
    assert ">1.2346<" in html
    with pytest.raises(ValueError):
        render_prompt_html(["a"], [1, 2], [1.0], 1.0, HeatmapConfig())


def test_render_stacked_html() -> None:
    heats = [
        PromptHeat("p<1>", ["x"], [1], np.array([1.0]), 2.0),
        PromptHeat("p2", ["y", "z"], [2, 3], np.array([-2.0, 0.5]), 2.0),
    ]
    html = render_stacked_html(heats, HeatmapConfig(compact=False), title="L<1>", meta="m")
    assert "p&lt;1&gt;" in html and "L&lt;1&gt;" in html
    assert html.count('class="nsh-cell"') == 3
    assert "max|v|=2 (global)" in html and 'class="nsh-stacked"' in html
    compact = render_stacked_html(heats, HeatmapConfig(compact=True))
    assert 'class="nsh-stacked nsh-compact"' in compact and "max|v|=2" not in compact


def test_write_scores_html_escapes() -> None:
    ws = {"top_pos": [{"token": "<b>x</b>", "score": 1.5}], "top_neg": []}
    html = write_scores_html(ws)
    assert "&lt;b&gt;x&lt;/b&gt;" in html and "+1.500" in html and "<i>none</i>" in html
