"""Export chosen atlas neurons as ONE self-contained HTML file (no server, no network).

1. Check the inputs: the neurons are in the atlas, ``out`` is not a folder, a probe run (when
   given) is of the atlas's model.
2. Read the run's analysis folder once with the library loaders of
   :mod:`neuron_signatures.analysis.results` (signatures, influence and peaks rankings, write
   scores).
3. Write the head (inline style sheet), a table of contents, then per neuron: read
   ``atlas.neuron(l, n)``, render its section (:mod:`.html_parts`) and the run's panel, write it,
   drop it (memory: one neuron); then the inline script.
4. The file is written under a temporary name in its folder and renamed once complete, so a
   failure never leaves a page that looks finished.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from ..analysis.results import (
    SIGNATURES_FILE,
    Ranking,
    analysis_dir,
    causal_check_values,
    list_rankings,
    load_signatures,
    load_write_scores,
    say_x_check,
)
from ..atlas.reader import Atlas
from ..errors import BadArgumentError
from ..signatures.corpus_check import NameCheck
from ..store.atomic import atomic_open
from ..store.manifest import read_manifest
from ..tokens import token_display
from .heatcss import CSS, SCRIPT
from .html_parts import anchor, esc, neuron_body, stats_html
from .neuronpedia import group_neurons


def export_html(
    atlas: Atlas,
    neurons: Sequence[tuple[int, int]],
    out: Path,
    *,
    run_dir: Path | None = None,
    progress: Callable[[int], None] | None = None,
) -> Path:
    """Write the neuron pages of ``neurons`` into the HTML file ``out``; returns ``out``.
    ``progress(1)`` is called after each neuron.

    Raises:
        BadArgumentError: no neurons, a neuron not in the atlas, ``out`` is a folder, or the run
            is of another model than the atlas.
        RunFormatError: ``run_dir`` is not a run folder.
    """
    out = Path(out)
    if out.is_dir():
        raise BadArgumentError(f"--out {out} is a folder: name an .html file")
    by_layer = group_neurons(atlas, neurons)
    ids = [(layer, n) for layer, indices in by_layer.items() for n in indices]
    run = ProbeRun.load(Path(run_dir), atlas.model_name) if run_dir is not None else None
    with atomic_open(out, "w") as f:
        _write_page(f, atlas, ids, run, progress)
    return out


def _write_page(
    f: IO[str],
    atlas: Atlas,
    ids: list[tuple[int, int]],
    run: ProbeRun | None,
    progress: Callable[[int], None] | None,
) -> None:
    title = f"Neuron pages: {atlas.model_name}"
    f.write(
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{esc(title)}</title><style>{CSS}</style></head><body>"
        f'<header><h1>{esc(title)}</h1><p class="meta">{esc(page_meta(atlas, ids, run))}</p>'
        '</header><div class="layout">'
    )
    f.write(toc_html(ids, run))
    f.write("<main>")
    for layer, index in ids:
        rec = atlas.neuron(layer, index)
        f.write(
            f'<section class="neuron" id="{anchor(layer, index)}">'
            f'<h2>L{layer}/N{index}<a class="up" href="#toc">↑ contents</a></h2>'
            f'<p class="meta">{esc(atlas.model_name)} | layer {layer} of {atlas.n_layers}, '
            f"{atlas.d_mlp} neurons per layer</p>"
            + stats_html(rec.stats)
            + neuron_body(rec)
            + (run.panel(layer, index) if run is not None else "")
            + "</section>"
        )
        del rec
        if progress is not None:
            progress(1)
    f.write(f"</main></div><script>{SCRIPT}</script></body></html>\n")


def page_meta(atlas: Atlas, ids: list[tuple[int, int]], run: ProbeRun | None) -> str:
    parts = [
        f"atlas {atlas.root.name}: {len(atlas.layers)} of {atlas.n_layers} layers x "
        f"{atlas.d_mlp} neurons, {atlas.tokens_seen:,} tokens in windows of {atlas.ctx_len}",
        f"{len(ids)} neuron{'s' if len(ids) != 1 else ''}",
    ]
    if run is not None:
        parts.append(f"probe run {run.run_dir.name}")
    return " | ".join(parts)


def toc_html(ids: list[tuple[int, int]], run: ProbeRun | None) -> str:
    """Links to every neuron (with its signature name when the run has one)."""
    items = []
    for layer, index in ids:
        name = run.signature_name(layer, index) if run is not None else ""
        extra = f' <span class="note">{esc(name)}</span>' if name else ""
        items.append(f'<li><a href="#{anchor(layer, index)}">L{layer}/N{index}</a>{extra}</li>')
    return (
        '<nav id="toc"><b>Contents</b>'
        '<input id="toc-filter" type="search" placeholder="filter" aria-label="filter neurons">'
        f"<ol>{''.join(items)}</ol></nav>"
    )


@dataclass
class ProbeRun:
    """What a probe run's analysis folder says about neurons (read once)."""

    run_dir: Path
    signatures: dict[tuple[int, int], dict[str, Any]] = field(default_factory=dict)
    influence: list[Ranking] = field(default_factory=list)
    peak_rows: dict[tuple[int, int], dict[str, Any]] = field(default_factory=dict)
    write_scores: dict[tuple[int, int], dict] = field(default_factory=dict)

    @classmethod
    def load(cls, run_dir: Path, model_name: str) -> ProbeRun:
        """Read the analysis of ``run_dir``; the run must be of ``model_name``."""
        manifest = read_manifest(run_dir)
        run_model = str(manifest.get("model_name", "unknown"))
        if run_model != model_name:
            raise BadArgumentError(
                f"--run_dir {run_dir} is a run of {run_model!r}, the atlas of {model_name!r}: "
                "give a run of the atlas's model"
            )
        folder = analysis_dir(run_dir)
        rankings = list_rankings(folder)
        peaks: dict[tuple[int, int], dict[str, Any]] = {}
        for r in rankings:
            if r.kind == "top_neurons":
                for n in r.neurons:
                    peaks.setdefault((n.layer, n.neuron), n.fields)
        return cls(
            run_dir=run_dir,
            signatures=load_signatures(folder),
            influence=[r for r in rankings if r.kind == "influence"],
            peak_rows=peaks,
            write_scores=load_write_scores(folder),
        )

    def signature_name(self, layer: int, index: int) -> str:
        sig = self.signatures.get((layer, index)) or {}
        return " - ".join(str(sig[k]) for k in ("class", "name") if sig.get(k))

    def panel(self, layer: int, index: int) -> str:
        """The run's signature, influence records, peak statistics and write scores."""
        key = (layer, index)
        parts = [
            signature_html(self.signatures.get(key)),
            influence_html(list(self._influence(layer, index))),
            peaks_html(self.peak_rows.get(key)),
            write_scores_html(self.write_scores.get(key)),
        ]
        body = "".join(parts) or (
            '<p class="note">no signature, influence or write scores for this neuron in the run</p>'
        )
        return f'<div class="probe"><h3>Probe run: {esc(self.run_dir.name)}</h3>{body}</div>'

    def _influence(self, layer: int, index: int) -> Iterator[tuple[str, int, dict[str, Any]]]:
        for r in self.influence:
            for n in r.neurons:
                if (n.layer, n.neuron) == (layer, index):
                    yield r.title, n.rank, n.fields


def _num(value: Any, spec: str = "+.4g") -> str:
    if value is None:  # NaN written to JSON
        return "n/a"
    try:
        x = float(value)
    except (TypeError, ValueError):
        return esc(value)
    return format(x, spec) if math.isfinite(x) else "n/a"


def signature_html(sig: dict[str, Any] | None) -> str:
    if not sig:
        return ""
    out = [
        f'<p class="sig"><b>signature</b>: {esc(sig.get("class") or "?")} - '
        f"{esc(sig.get('name') or '')}"
        f' <span class="note">from {esc(sig.get(SIGNATURES_FILE, ""))}</span></p>'
    ]
    check = say_x_check(sig)
    if check is not None:
        out.append(f'<p class="note">{esc(check.describe())}</p>')
    corpus = NameCheck.from_fields(sig)  # stored by `signatures --atlas`
    if corpus is not None:
        out.append(f'<p class="note">{esc(corpus.describe())}</p>')
    reasons = sig.get("reasons")
    if reasons:
        text = "; ".join(map(str, reasons)) if isinstance(reasons, list) else str(reasons)
        out.append(f'<p class="note">{esc(text)}</p>')
    out.append(probe_peaks_html(sig))
    return "".join(out)


def probe_peaks_html(sig: dict[str, Any]) -> str:
    """Per-probe peaks: the signature's ``probes`` rows or a ``*peak*`` mapping."""
    rows = sig.get("probes")
    if isinstance(rows, list) and rows and isinstance(rows[0], dict):
        cols = [c for c in rows[0] if c in ("probe_id", "concept") or "peak" in c]
        table = [[r.get(c) for c in cols] for r in rows]
    else:
        mapping = next(
            ((k, v) for k, v in sig.items() if "peak" in k and isinstance(v, dict)), None
        )
        if mapping is None:
            return ""
        cols = ["probe", mapping[0]]
        table = [[k, v] for k, v in mapping[1].items()]
    head = "".join(f"<th>{esc(c)}</th>" for c in cols)
    body = "".join("<tr>" + "".join(f"<td>{_cell(v)}</td>" for v in row) + "</tr>" for row in table)
    return f'<table class="peaks"><tr>{head}</tr>{body}</table>'


def _cell(v: Any) -> str:
    return _num(v, ".4g") if isinstance(v, int | float) and not isinstance(v, bool) else esc(v)


def influence_html(rows: list[tuple[str, int, dict[str, Any]]]) -> str:
    out = []
    for title, rank, f in rows:
        line = (
            f"influence rank #{rank} in {title}: influence {_num(f.get('influence'))}, "
            f"activation {_num(f.get('activation'), '.4g')} at ctx {f.get('ctx_idx')}"
        )
        causal = causal_check_values(f)  # only the first --verify_top records were checked
        if causal is not None:
            line += f"; causal check: real delta {causal[0]:+.4g} vs predicted {causal[1]:+.4g}"
        out.append(f'<p class="influence">{esc(line)}</p>')
    return "".join(out)


def peaks_html(row: dict[str, Any] | None) -> str:
    if not row:
        return ""
    keys = ("mean_peak_abs", "max_peak_abs", "frac_peak_functional", "mode_peak_token_ascii")
    text = ", ".join(f"{k} {_cell(row[k])}" for k in keys if k in row)
    return f'<p class="note">peaks ranking: {text}</p>' if text else ""


def write_scores_html(ws: dict | None) -> str:
    if not ws:
        return ""

    def chips(items: list[dict], cls: str) -> str:
        return (
            " ".join(
                f'<span class="chip {cls}">{esc(token_display(str(t.get("token", "?"))))} '
                f"<small>{_num(t.get('score'), '+.3f')}</small></span>"
                for t in items[:8]
            )
            or "<i>none</i>"
        )

    return (
        '<p class="note">write scores of the run:</p><div class="ws">'
        f"<b>promotes +</b> {chips(ws.get('top_pos', []), 'pos')}<br>"
        f"<b>suppresses −</b> {chips(ws.get('top_neg', []), 'neg')}</div>"
    )
