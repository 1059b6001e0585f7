"""The main-area panels: neuron card, write scores, charts, heatmaps, tables and CSV downloads."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import streamlit as st

from ..analysis.results import SIGNATURES_FILE, causal_check_values, say_x_check
from ..signatures.corpus_check import NameCheck, shown_check
from ..tokens import token_display
from . import charts, steer
from .heatmap import (
    HeatmapConfig,
    PromptHeat,
    escape,
    prompt_scales,
    render_prompt_html,
    render_stacked_html,
    write_scores_html,
)
from .runview import Analysis, PromptPeaks, RunView
from .selection import INFLUENCE
from .sidebar import Selection
from .state import CHART_KEY, chart_pick
from .tables import candidates_table, peaks_table, probe_peaks, token_table


def render_page(
    view: RunView, analysis: Analysis, sel: Selection, cfg: HeatmapConfig, order: str, limit: int
) -> None:
    """Every panel for the selected neuron."""
    view.run.check_neuron(sel.layer, sel.neuron)
    flat = view.neuron_flat(sel.layer, sel.neuron)
    scales = prompt_scales(
        flat, view.starts, view.lengths, view.bos_mask, cfg.normalization, cfg.exclude_bos
    )
    peaks = view.peaks(flat)
    shown = view.shown_prompts(flat, order, limit)
    st.subheader(f"Selected neuron: layer {sel.layer}, neuron {sel.neuron}")
    ws_html = neuron_card(view, analysis, sel, peaks)
    steer.run_steer(view.run, sel.layer, sel.neuron)
    i = line_charts(view, flat, shown, cfg.exclude_bos)
    tokens_df = token_heatmap(view, flat, float(scales[i]), i, sel, cfg)
    stacked_heatmap(view, flat, sel, cfg, order, shown, ws_html, scales, peaks)
    peaks_df = peaks_table(view, peaks)
    with st.expander("Per-prompt peaks", expanded=False):
        st.dataframe(peaks_df, width="stretch", height=300, hide_index=True)
    downloads(sel, view.run.prompts[i].probe_id, tokens_df, peaks_df)
    if sel.mode == INFLUENCE and sel.table is not None and sel.kept is not None:
        influence_distribution(sel)


def stacked_heatmap(
    view: RunView,
    flat: np.ndarray,
    sel: Selection,
    cfg: HeatmapConfig,
    order: str,
    shown: np.ndarray,
    ws_html: str = "",
    scales: np.ndarray | None = None,
    peaks: PromptPeaks | None = None,
) -> None:
    """Every shown prompt of the run, one under the other, for the same neuron (``scales`` and
    ``peaks`` are computed here unless the caller has them)."""
    if scales is None:
        scales = prompt_scales(
            flat, view.starts, view.lengths, view.bos_mask, cfg.normalization, cfg.exclude_bos
        )
    if peaks is None:
        peaks = view.peaks(flat)
    st.markdown("#### Stacked heatmap: all prompts, same neuron")
    heats = [_heat(view, flat, int(j), float(scales[j]), peaks) for j in shown]
    norm = "one scale for all prompts" if cfg.normalization == "global" else "scale per prompt"
    meta = f"{norm} | showing {len(shown)} of {view.run.n_prompts} prompts ({order} order)"
    title = f"Layer {sel.layer} | neuron {sel.neuron}"
    st.html(render_stacked_html(heats, cfg, title=title, subtitle_html=ws_html, meta=meta))


def token_heatmap(
    view: RunView, flat: np.ndarray, scale: float, i: int, sel: Selection, cfg: HeatmapConfig
) -> pd.DataFrame:
    """The heatmap and token table of the picked prompt; returns the table."""
    p = view.run.prompts[i]
    st.markdown("#### Token heatmap")
    st.caption("Green: positive, orange: negative; opacity grows with log10(1 + 9|v|/max|v|).")
    title = f"Prompt {p.probe_id} | layer {sel.layer} | neuron {sel.neuron}"
    values = flat[view.prompt_slice(i)]
    st.html(render_prompt_html(p.tokens, p.token_ids, values, scale, cfg, title=title))
    tokens_df = token_table(view, flat, i)
    with st.expander("Token table (selected prompt)", expanded=False):
        st.dataframe(tokens_df, width="stretch", height=300, hide_index=True)
    return tokens_df


def line_charts(view: RunView, flat: np.ndarray, shown: np.ndarray, hide_bos: bool) -> int:
    """Overlay of the shown prompts and the single-prompt chart; returns the picked prompt."""
    values = np.where(view.bos_mask, np.nan, flat) if hide_bos else flat
    left, right = st.columns(2)
    with left:
        traces = [_trace(view, values, int(j), "lines") for j in shown]
        title = f"Overlay across prompts ({len(shown)} of {view.run.n_prompts})"
        st.plotly_chart(charts.overlay_figure(traces, title), key="overlay_chart")
    with right:
        i = _prompt_pick(view)
        st.plotly_chart(charts.prompt_figure(*_series(view, values, i)), key="prompt_chart")
    return i


def _series(
    view: RunView, flat: np.ndarray, i: int
) -> tuple[str, list[str], list[int], np.ndarray]:
    p = view.run.prompts[i]
    return p.probe_id, p.tokens, p.token_ids, flat[view.prompt_slice(i)]


def _trace(view: RunView, flat: np.ndarray, i: int, mode: str) -> dict:
    return charts.line_trace(*_series(view, flat, i), mode=mode)


def _heat(view: RunView, flat: np.ndarray, i: int, scale: float, peaks: PromptPeaks) -> PromptHeat:
    pid, tokens, ids, values = _series(view, flat, i)
    meta = f" | peak {peaks.value[i]:+.4g} at ctx {int(peaks.ctx_idx[i])}"
    return PromptHeat(pid, tokens, ids, values, scale, meta)


def _prompt_pick(view: RunView) -> int:
    ss, n = st.session_state, view.run.n_prompts
    if not 0 <= int(ss.get("prompt_pick", 0)) < n:
        del ss["prompt_pick"]
    ids = view.prompt_ids
    return int(st.selectbox("prompt", range(n), key="prompt_pick", format_func=lambda k: ids[k]))


def neuron_card(
    view: RunView, analysis: Analysis, sel: Selection, peaks: PromptPeaks, atlas: Any = None
) -> str:
    """Peak statistics, influence and causal check, signature, write scores; returns chip HTML.

    With ``atlas`` (an atlas page with this run beside it) the signature's name is checked
    against the atlas's corpus now (:func:`~neuron_signatures.signatures.corpus_check.
    shown_check`); without, the check stored by ``signatures --atlas`` is shown, if any."""
    with st.container(border=True):
        _peak_metrics(view, analysis.peak_row(sel.layer, sel.neuron) or {}, peaks)
        c = sel.candidate
        if sel.mode == INFLUENCE and c is not None:
            _influence_lines(c.rank, c.fields)
        sig = analysis.signatures_in(sel.signatures_file).get((sel.layer, sel.neuron))
        signature_block(sig, shown_check(sig, atlas, view.run.manifest))
        ws, note = analysis.write_scores(sel.layer, sel.neuron, sel.source)
        if ws:
            chips = write_scores_html(ws)
            st.html(chips)
            st.caption(f"write scores ({note})")
            _explicit(ws)
            return chips
        st.caption("no write scores for this neuron in the analysis folder")
    return ""


def _peak_metrics(view: RunView, row: dict[str, Any], peaks: PromptPeaks) -> None:
    """The run-wide peak (computed now) and the peak statistics of the analysis, if any."""
    run, cols = view.run, st.columns(4)
    top = int(np.argmax(peaks.abs_max))
    tok = run.prompts[top].tokens[int(peaks.ctx_idx[top])] if run.prompts[top].tokens else ""
    cols[0].metric(
        "peak |act| in run",
        f"{peaks.abs_max[top]:.4g}",
        help=f"prompt {run.prompts[top].probe_id}, token {token_display(tok)!r}",
    )
    if "mean_peak_abs" in row:
        cols[1].metric("mean peak |act| (analysis)", f"{float(row['mean_peak_abs']):.4g}")
    if "frac_peak_functional" in row:
        cols[2].metric("functional peak share", f"{float(row['frac_peak_functional']):.0%}")
    if "mode_peak_token_ascii" in row:
        count = row.get("mode_peak_token_count", "?")
        cols[3].metric(
            "mode peak token",
            repr(str(row["mode_peak_token_ascii"])),
            help=f"the peak token of {count} prompts",
        )


def _influence_lines(rank: int, f: dict[str, Any]) -> None:
    """The influence record of the neuron and, when it ran for this record, the causal check
    (``--verify_top`` checks only the first records: later ones hold None)."""
    st.caption(
        f"influence rank #{rank}: influence {_fmt(f.get('influence'), '+.4g')}, "
        f"activation {_fmt(f.get('activation'), '.4g')} at ctx {f.get('ctx_idx')}"
    )
    causal = causal_check_values(f)
    if causal is not None:
        st.caption(f"causal check: real delta {causal[0]:+.4g} vs predicted {causal[1]:+.4g}")


def _explicit(ws: dict) -> None:
    explicit = ws.get("explicit") or []
    if explicit:
        st.caption(
            "explicit tokens: "
            + ", ".join(
                f"{token_display(str(e.get('token', '?')))!r} {float(e.get('score', 0)):+.3f}"
                for e in explicit
            )
        )


def signature_block(sig: dict[str, Any] | None, corpus: NameCheck | None = None) -> None:
    """The neuron's signature (class, name, its file, the Say X write-score check, the corpus
    check of the name, reasons, per-probe peaks) when one was computed."""
    if not sig:
        return
    source = sig.get(SIGNATURES_FILE)
    check = say_x_check(sig)
    color = {True: "#1a7f37", False: "#b42318", None: "#666"}[corpus.supported] if corpus else ""
    st.html(
        f'<div class="nsh-signature"><b>signature</b>: {escape(sig.get("class") or "?")}'
        f" - {escape(sig.get('name') or '')}"
        + (f' <small style="color:#666">· from {escape(source)}</small>' if source else "")
        + "</div>"
        + (f'<div class="nsh-say-x">{escape(check.describe())}</div>' if check else "")
        + (
            f'<div class="nsh-corpus" style="color:{color}">{escape(corpus.describe())}</div>'
            if corpus
            else ""
        )
    )
    reasons = sig.get("reasons")
    if reasons:
        st.caption("; ".join(map(str, reasons)) if isinstance(reasons, list) else str(reasons))
    alignment = sig.get("alignment")
    if isinstance(alignment, dict):
        st.caption("alignment: " + ", ".join(f"{k} {_fmt(v)}" for k, v in alignment.items()))
    peaks = probe_peaks(sig)
    if peaks is not None:
        st.dataframe(peaks, width="stretch", hide_index=True)


def _fmt(value: Any, spec: str = ".3g") -> str:
    """``value`` as a number in ``spec``; ``n/a`` for None, NaN or inf; else its text."""
    if value is None:
        return "n/a"
    try:
        x = float(value)
    except (TypeError, ValueError):
        return str(value)
    return format(x, spec) if np.isfinite(x) else "n/a"


def downloads(
    sel: Selection, prompt_id: str, tokens_df: pd.DataFrame, peaks_df: pd.DataFrame
) -> None:
    """CSV downloads of the tables on screen."""
    tag = f"L{sel.layer}_N{sel.neuron}"
    cols = st.columns(3)
    cols[0].download_button(
        "token table CSV",
        tokens_df.to_csv(index=False),
        f"tokens_{tag}_{prompt_id}.csv",
        "text/csv",
        key="dl_tokens",
    )
    cols[1].download_button(
        "per-prompt peaks CSV",
        peaks_df.to_csv(index=False),
        f"peaks_{tag}.csv",
        "text/csv",
        key="dl_peaks",
    )
    if sel.candidates:
        cand = candidates_table(sel.candidates)
        cols[2].download_button(
            "candidate list CSV",
            cand.to_csv(index=False),
            f"candidates_{sel.mode}.csv",
            "text/csv",
            key="dl_cands",
        )


def influence_distribution(sel: Selection) -> None:
    """Scatter or bars of the kept influence records; a click or lasso selects that neuron."""
    assert sel.table is not None and sel.kept is not None
    st.markdown("#### Influence distribution")
    c1, c2 = st.columns(2)
    kind = c1.selectbox("chart", charts.CHART_KINDS, key="infl_chart_kind")
    y_metric = c2.selectbox(
        "y metric", ("abs_influence", "influence", "activation"), key="infl_y_metric"
    )
    fig = charts.influence_figure(sel.table, sel.kept, kind, y_metric, sel.index)
    st.plotly_chart(
        fig, key=CHART_KEY, on_select=chart_pick, selection_mode=("points", "box", "lasso")
    )
    st.caption(
        "Click a point, or lasso / box select, to show that neuron (the best-ranked of a "
        "selection). The red star is the neuron on screen."
    )
