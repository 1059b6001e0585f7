"""The NeuronRecord page: browse a folder of OpenAI ``NeuronRecord`` files
(``{layer}/{neuron}.json``, ours from ``export --format neuron_record`` or OpenAI's datasets).

``neuron-signatures app --neuron_records E`` (or ``?neuron_records=E``) opens it. The sidebar picks
a layer and a neuron among the folder's files; ``?layer=&neuron=`` asks for one, and the neuron on
screen is written back to the URL. The page shows the record's moments, its top activation records
and its random samples per quantile bucket as heatmap rows (the heat rule of :mod:`.heatmap`; one
scale per section; a token without a stored value is uncoloured and says ``n/a``).
"""

from __future__ import annotations

import math
from argparse import Namespace
from pathlib import Path

import numpy as np
import streamlit as st

from ..errors import NeuronSignaturesError
from ..export.records import ActivationRecord, NeuronRecord, NeuronRecordFolder, open_neuron_records
from ..tokens import token_display
from .examples import EXAMPLE_CSS
from .heatmap import CSS, HeatmapConfig, escape, max_abs, rows_html, token_cells
from .sidebar import allowed
from .state import read_url, write_url

URL_KEY = "neuron_records"


def records_input(args: Namespace) -> str:
    """The folder box, drawn only when a folder was given (``?neuron_records=``, else
    ``--neuron_records``); returns the folder or ``""`` (then the other pages show)."""
    ss = st.session_state
    if "records_dir" not in ss:
        first = str(st.query_params.get(URL_KEY) or getattr(args, "neuron_records", None) or "")
        if not first:
            return ""
        ss["records_dir"] = first
    st.sidebar.header("NeuronRecords")
    st.sidebar.text_input(
        "neuron_records",
        key="records_dir",
        help="a folder of {layer}/{neuron}.json NeuronRecord files (clear it for the other pages)",
    )
    folder = str(ss["records_dir"]).strip()
    qp, started = st.query_params, getattr(args, "neuron_records", None) or ""
    if folder and folder != started:
        if qp.get(URL_KEY) != folder:
            qp[URL_KEY] = folder
    elif URL_KEY in qp and folder != qp.get(URL_KEY):
        del qp[URL_KEY]
    return folder


@st.cache_resource(show_spinner="Listing the NeuronRecord files...", max_entries=4)
def _folder(root: str, stamp: int) -> NeuronRecordFolder:
    del stamp  # part of the cache key only
    return open_neuron_records(root)


def get_folder(folder: str) -> NeuronRecordFolder:
    """The cached file list of a folder (re-listed when the folder's mtime changes)."""
    path = Path(folder).expanduser().resolve()
    try:
        stamp = path.stat().st_mtime_ns
    except OSError:
        stamp = 0
    return _folder(str(path), stamp)


def select_record(recs: NeuronRecordFolder) -> tuple[int, int]:
    """Layer and neuron boxes (only neurons that have a file); the URL asks once."""
    sb, ss = st.sidebar, st.session_state
    ss["_layers"], ss["_n_layers"], ss["_d_mlp"] = recs.layers, None, None
    read_url(scope="NeuronRecord folder")
    goto = ss.pop("_goto", None)
    if goto and tuple(goto) not in recs.files:
        ss["_goto_error"] = f"{recs.root} has no record of L{goto[0]}/N{goto[1]}"
    elif goto:
        ss["rec_layer"], ss["rec_neuron"] = goto
    if ss.get("rec_layer") not in recs.layers:
        ss["rec_layer"] = recs.layers[0]
    sb.header("Neuron")
    if ss.get("_goto_error"):
        sb.error(ss.pop("_goto_error"))
    layer = int(sb.selectbox("layer", recs.layers, key="rec_layer"))
    neurons = recs.neurons(layer)
    if ss.get("rec_neuron") not in neurons:
        ss["rec_neuron"] = neurons[0]
    neuron = int(sb.selectbox("neuron", neurons, key="rec_neuron"))
    write_url(layer, neuron)
    return layer, neuron


def display_config() -> HeatmapConfig:
    with st.sidebar.expander("Display", expanded=False):
        values = st.checkbox("values on tokens", False, key="rec_values")
        per_row = int(st.number_input("tokens per row", 5, 500, 32, 1, key="rec_tpr"))
    return HeatmapConfig(tokens_per_row=per_row, show_values=values, compact=True)


def record_html(r: ActivationRecord, scale: float, cfg: HeatmapConfig, rank: int | None) -> str:
    """One record: ``#rank | max +v on 'tok'`` and its tokens (the max outlined)."""
    vals = np.asarray(r.activations, dtype=np.float64)
    finite = np.isfinite(vals)
    best = int(np.argmax(np.where(finite, vals, -np.inf))) if finite.any() else None
    head = [f"#{rank}"] if rank is not None else []
    if best is not None:
        head.append(f"max {vals[best]:+.4g} on {token_display(r.tokens[best])!r}")
    head.append(f"{len(r.tokens)} tokens")
    ids = [-1] * len(r.tokens)  # NeuronRecords keep token strings only
    row = rows_html(token_cells(r.tokens, ids, vals, scale, cfg, 0, best), cfg.tokens_per_row)
    return f'<div class="nsa-ex"><div class="nsa-label">{escape(" | ".join(head))}</div>{row}</div>'


def records_html(records: list[ActivationRecord], cfg: HeatmapConfig, ranked: bool) -> str:
    scale = max((max_abs(r.activations, exclude_bos=False) for r in records), default=0.0)
    body = "".join(
        record_html(r, scale, cfg, i + 1 if ranked else None) for i, r in enumerate(records)
    )
    return CSS + EXAMPLE_CSS + f'<div class="nsa-examples">{body}</div>'


def _fmt(x: float) -> str:
    return "n/a" if math.isnan(x) else f"{x:.4g}"


def render_record(rec: NeuronRecord, path: Path, cfg: HeatmapConfig) -> None:
    """Header, moments, top records, samples per quantile bucket and the random sample."""
    nid = rec.neuron_id
    st.subheader(f"L{nid.layer}/N{nid.index}")
    top = rec.most_positive_activation_records
    st.caption(f"NeuronRecord {path}")
    cols = st.columns(5)
    for col, (label, value) in zip(
        cols,
        [("mean", rec.mean), ("variance", rec.variance), ("skewness", rec.skewness),
         ("kurtosis", rec.kurtosis)],
        strict=False,
    ):  # fmt: skip
        col.metric(label, _fmt(value))
    peak = max((max_abs(r.activations, exclude_bos=False) for r in top), default=math.nan)
    cols[4].metric("max |top activation|", _fmt(peak))
    st.markdown(f"#### Top activation records ({len(top)})")
    st.caption("Highest first, one scale for all rows; the record's max is outlined.")
    st.html(records_html(top, cfg, ranked=True))
    buckets = rec.random_sample_by_quantile or []
    st.markdown(f"#### Random sample by quantile ({len(buckets)} buckets)")
    if not buckets:
        st.caption("This record has no quantile samples.")
    ranges = rec.bucket_ranges()
    for k in reversed(range(len(buckets))):  # highest bucket first, as the top records
        lo, hi = ranges[k]
        st.markdown(f"**bucket {k + 1} of {len(buckets)}: {lo:.4g} – {hi:.4g}** "
                    f"({len(buckets[k])} records)")  # fmt: skip
        st.html(records_html(buckets[k], cfg, ranked=False))
    with st.expander(f"Random sample ({len(rec.random_sample)} records)"):
        st.html(records_html(rec.random_sample, cfg, ranked=False))


def records_page(folder: str, root: str | None) -> None:
    """The whole NeuronRecord page (errors shown in one line, never a stack trace)."""
    if not allowed(folder, root, "neuron_records"):
        return
    try:
        recs = get_folder(folder)
        layer, neuron = select_record(recs)
        cfg = display_config()
        render_record(recs.record(layer, neuron), recs.files[(layer, neuron)], cfg)
    except NeuronSignaturesError as e:
        st.error(f"Cannot show the NeuronRecords: {e}")
