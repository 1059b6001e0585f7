"""Export an atlas as OpenAI NeuronRecord files: ``{out_dir}/{layer}/{neuron}.json``.

The files load with OpenAI's ``neuron_explainer.fast_dataclasses.loads`` (format and reader:
:mod:`.records`). One neuron of the atlas maps to one record:

1. ``most_positive_activation_records``: the atlas's top examples, one record per corpus window
   (a window that holds several top tokens appears once, at its best rank: OpenAI ranks excerpts by
   their max activation), tokens and activations of the whole window. The BOS position is left out
   unless the atlas counted BOS (``--include_bos``): Gemma's BOS is an attention sink whose value
   would dwarf the neuron's real maximum, which OpenAI's explainer uses as its 0-10 scale.
2. ``random_sample_by_quantile``: the atlas's interval samples, lowest interval first: a
   stratified sample, the same number of uniform samples from each interval whatever its count.
   Intervals are unions of whole histogram bins cut near the deciles (:mod:`..atlas.record`), so
   their counts differ (OpenAI's GPT-2 XL records use 5 buckets at quantiles 0.5, 0.9, 0.99,
   0.999). The atlas stores only the sampled
   token's value, so its record is the sampled token's window with every other activation
   ``null`` (NaN in memory): OpenAI's scoring needs complete records, so score on the top records.
3. ``quantile_boundaries``: the activation values between consecutive intervals (their shared bin
   edges, one fewer than the intervals, as OpenAI's 4 boundaries for 5 buckets).
4. ``random_sample``: a uniform draw from all the neuron's counted tokens (the atlas's
   ``random_sample``: the lowest sampling priorities over every bin, so each part of the
   distribution appears in proportion to its count), highest value first; records as in 2.
   Atlases of format version 3 on draw independently per neuron.
5. ``mean``, ``variance``: the atlas's exact moments over every counted token (population
   variance). ``skewness``, ``kurtosis``: the atlas's, when it has them (``NaN``, written ``null``,
   for atlases built before they were added); kurtosis is whatever the atlas stores (see
   ``NeuronStats``): OpenAI's public code does not say which convention its records use.
6. Tokens are the vocabulary pieces with SentencePiece's ``▁`` written as a space, as OpenAI's
   records hold decoded text pieces.

Each file is written under a temporary name and renamed into place, so an interrupted export
never leaves a half-written record; neurons are read one at a time (memory is one neuron's).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from ..store.manifest import utc_now
from ..tokens import SPIECE_SPACE
from .records import (
    NAN,
    ActivationRecord,
    NeuronId,
    NeuronRecord,
    NeuronRecordFolder,
    load_neuron_record,
    open_neuron_records,
    record_json,
)

if TYPE_CHECKING:
    from ..atlas import Atlas, Example, NeuronAtlas

__all__ = [
    "ActivationRecord",
    "NeuronId",
    "NeuronRecord",
    "NeuronRecordFolder",
    "atlas_neuron_record",
    "export_neuron_records",
    "load_neuron_record",
    "open_neuron_records",
    "record_path",
]

INFO_FILE = "neuron_records.json"  # how the export was made (not a layer folder: readers skip it)


def record_path(out_dir: Path, layer: int, neuron: int) -> Path:
    return Path(out_dir) / str(layer) / f"{neuron}.json"


def _tokens(pieces: Iterable[str]) -> list[str]:
    return [p.replace(SPIECE_SPACE, " ") for p in pieces]


def _window_record(ex: Example, first: int) -> ActivationRecord:
    """The whole window of a top example (from position ``first``) with its activations."""
    acts = ex.acts if ex.acts is not None else [NAN] * len(ex.tokens)
    return ActivationRecord(_tokens(ex.tokens[first:]), [float(a) for a in acts[first:]])


def _sample_record(ex: Example, first: int) -> ActivationRecord:
    """The window of an interval sample: only the sampled token's value is known."""
    acts = [NAN] * len(ex.tokens)
    acts[ex.position] = float(ex.value)
    return ActivationRecord(_tokens(ex.tokens[first:]), acts[first:])


def atlas_neuron_record(rec: NeuronAtlas, include_bos: bool = False) -> NeuronRecord:
    """The NeuronRecord of one atlas neuron (rules 1-6 of the module docstring)."""
    first = 0 if include_bos else 1
    seen: set[int] = set()
    top = []
    for ex in rec.top:
        if ex.window not in seen:
            seen.add(ex.window)
            top.append(_window_record(ex, first))
    buckets = [[_sample_record(ex, first) for ex in iv.samples] for iv in rec.intervals]
    s = rec.stats
    return NeuronRecord(
        neuron_id=NeuronId(rec.layer, rec.index),
        random_sample=[_sample_record(ex, first) for ex in rec.random_sample],
        random_sample_by_quantile=buckets,
        quantile_boundaries=[float(iv.hi) for iv in rec.intervals[:-1]],
        mean=float(s.mean),
        variance=float(s.variance),
        skewness=float(getattr(s, "skewness", NAN)),
        kurtosis=float(getattr(s, "kurtosis", NAN)),
        most_positive_activation_records=top,
    )


def _write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def export_neuron_records(
    atlas: Atlas,
    neurons: list[tuple[int, int]],
    out_dir: str | Path,
    *,
    progress: Callable[[int], None] | None = None,
) -> Path:
    """Write one NeuronRecord file per neuron; returns ``out_dir``.

    Args:
        neurons: ``(layer, index)`` pairs (see :func:`.select.parse_neurons`).
        progress: called with ``1`` after each neuron is written.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    include_bos = bool(atlas.manifest["params"].get("include_bos", False))
    info = {
        "format": "openai-neuron-record",
        "layout": "{layer}/{neuron}.json",
        "created_at_utc": utc_now(),
        "atlas": str(Path(atlas.root).resolve()),
        "model": atlas.model_name,
        "tokens_seen": atlas.tokens_seen,
        "include_bos": include_bos,
        "n_neurons": len(neurons),
    }
    _write_atomic(out / INFO_FILE, json.dumps(info, indent=1) + "\n")
    for layer, index in neurons:
        rec = atlas_neuron_record(atlas.neuron(layer, index), include_bos)
        _write_atomic(record_path(out, layer, index), record_json(rec))
        if progress is not None:
            progress(1)
    return out
