"""OpenAI's ``NeuronRecord`` (automated-interpretability): the dataclasses, their JSON, a reader.

The format is that of ``openai/automated-interpretability``,
``neuron-explainer/neuron_explainer/activations/activations.py`` (dataclasses ``ActivationRecord``,
``NeuronId``, ``NeuronRecord``) serialised by ``neuron_explainer/fast_dataclasses``: ``dumps`` is
``orjson.dumps`` of the dataclass, ``loads`` is ``json.loads`` with an object hook that rebuilds a
dataclass from its ``dataclass_name`` key (or, without it, from its set of field names).

1. Writing (:func:`record_json`) gives the bytes their ``dumps`` writes (tested against the
   ``neuron-explainer`` package itself): each object's fields in declaration order, then its
   ``"dataclass_name"`` (orjson serialises a dataclass instance's ``__dict__``, where
   ``__post_init__`` sets the name last); compact, UTF-8 as is, NaN and infinities as ``null``,
   floats as orjson spells them (we serialise with orjson too).
2. Reading (:func:`parse_record`) accepts what other tools wrote: with or without
   ``dataclass_name``, any key order, ``NaN`` / ``Infinity`` or ``null`` for a missing value, the
   older ``NeuronId`` keys ``layer`` / ``idx`` and a layer index stored as a string
   (openai/transformer-debugger's loader allows both), and absent optional fields.
3. A folder of records (:func:`open_neuron_records`) is ``{layer}/{neuron}.json`` as in OpenAI's
   public GPT-2 XL dataset (``collated-activations/{layer_index}/{neuron_index}.json``), or the
   same under ``neurons/``; ``.jsonl`` files (one JSON object, on the first line) are read too.

In memory a missing value is always ``nan`` (never ``None``); the neuron is this package's
:class:`~neuron_signatures.neurons.NeuronId` (``layer``, ``index``), written as OpenAI's
``layer_index`` / ``neuron_index``.
"""

from __future__ import annotations

import itertools
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import RunFormatError
from ..neurons import NeuronId

__all__ = [
    "ActivationRecord",
    "NeuronId",
    "NeuronRecord",
    "NeuronRecordFolder",
    "load_neuron_record",
    "open_neuron_records",
    "parse_record",
    "record_json",
]

NAN = float("nan")
SUFFIXES = (".json", ".jsonl")


@dataclass
class ActivationRecord:
    """A token sequence and the neuron's activation on each token (``nan``: not stored)."""

    tokens: list[str]
    activations: list[float]


@dataclass
class NeuronRecord:
    """OpenAI's ``NeuronRecord``: samples of activation records and moments of one neuron.

    Attributes:
        neuron_id: the neuron (written as ``{"layer_index", "neuron_index"}``).
        random_sample: records drawn at random over the dataset.
        random_sample_by_quantile: random records per bucket of the activation distribution, lowest
            bucket first; ``None`` when the writer did not track quantiles.
        quantile_boundaries: the activation values between consecutive buckets (one fewer than the
            buckets; OpenAI's GPT-2 XL records have 4 boundaries for 5 buckets).
        mean, variance, skewness, kurtosis: moments of the activations (``nan`` when unknown).
        most_positive_activation_records: the records with the highest activation, highest first.
    """

    neuron_id: NeuronId
    random_sample: list[ActivationRecord] = field(default_factory=list)
    random_sample_by_quantile: list[list[ActivationRecord]] | None = None
    quantile_boundaries: list[float] | None = None
    mean: float = NAN
    variance: float = NAN
    skewness: float = NAN
    kurtosis: float = NAN
    most_positive_activation_records: list[ActivationRecord] = field(default_factory=list)

    def bucket_ranges(self) -> list[tuple[float, float]]:
        """``(lo, hi)`` of each quantile bucket from the boundaries (``±inf`` at the ends); also
        accepts boundaries that include both outer edges (one more than the buckets)."""
        buckets = self.random_sample_by_quantile or []
        b = [float(x) for x in self.quantile_boundaries or []]
        if len(b) == len(buckets) + 1:
            return list(itertools.pairwise(b))
        if len(b) != len(buckets) - 1:
            return [(NAN, NAN)] * len(buckets)
        edges = [-math.inf, *b, math.inf]
        return list(itertools.pairwise(edges))


# -- writing ---------------------------------------------------------------------------------------
def _num(x: float) -> float | None:
    """NaN / ±inf → ``None`` (written ``null``, as orjson writes them)."""
    x = float(x)
    return x if math.isfinite(x) else None


def _activation_obj(r: ActivationRecord) -> dict[str, Any]:
    return {
        "tokens": list(r.tokens),
        "activations": [_num(a) for a in r.activations],
        "dataclass_name": "ActivationRecord",
    }


def record_obj(rec: NeuronRecord) -> dict[str, Any]:
    """The JSON object of a record, keys in OpenAI's declaration order."""
    quant = rec.random_sample_by_quantile
    bounds = rec.quantile_boundaries
    return {
        "neuron_id": {
            "layer_index": int(rec.neuron_id.layer),
            "neuron_index": int(rec.neuron_id.index),
            "dataclass_name": "NeuronId",
        },
        "random_sample": [_activation_obj(r) for r in rec.random_sample],
        "random_sample_by_quantile": (
            None if quant is None else [[_activation_obj(r) for r in b] for b in quant]
        ),
        "quantile_boundaries": None if bounds is None else [_num(x) for x in bounds],
        "mean": _num(rec.mean),
        "variance": _num(rec.variance),
        "skewness": _num(rec.skewness),
        "kurtosis": _num(rec.kurtosis),
        "most_positive_activation_records": [
            _activation_obj(r) for r in rec.most_positive_activation_records
        ],
        "dataclass_name": "NeuronRecord",
    }


def record_json(rec: NeuronRecord) -> str:
    """The record as OpenAI's ``fast_dataclasses.dumps`` writes it (see the module docstring)."""
    import orjson

    return str(orjson.dumps(record_obj(rec)).decode("utf-8"))


# -- reading ---------------------------------------------------------------------------------------
def _float(x: Any) -> float:
    return NAN if x is None else float(x)


def _activation(d: Any) -> ActivationRecord:
    if not isinstance(d, dict) or "tokens" not in d or "activations" not in d:
        raise ValueError("an activation record needs 'tokens' and 'activations'")
    tokens, acts = [str(t) for t in d["tokens"]], [_float(a) for a in d["activations"]]
    if len(tokens) != len(acts):
        raise ValueError(f"an activation record has {len(tokens)} tokens, {len(acts)} activations")
    return ActivationRecord(tokens, acts)


def _neuron_id(d: Any) -> NeuronId:
    if not isinstance(d, dict):
        raise ValueError("'neuron_id' is not an object")
    layer, index = d.get("layer_index", d.get("layer")), d.get("neuron_index", d.get("idx"))
    if layer is None or index is None:
        raise ValueError("'neuron_id' needs 'layer_index' and 'neuron_index'")
    return NeuronId(int(layer), int(index))


def parse_record(obj: Any) -> NeuronRecord:
    """A :class:`NeuronRecord` from the decoded JSON of one (see rule 2 of the module docstring).

    Raises:
        ValueError: the object is not a NeuronRecord.
    """
    if not isinstance(obj, dict) or "neuron_id" not in obj:
        raise ValueError("not a NeuronRecord (no 'neuron_id')")
    quant, bounds = obj.get("random_sample_by_quantile"), obj.get("quantile_boundaries")
    return NeuronRecord(
        neuron_id=_neuron_id(obj["neuron_id"]),
        random_sample=[_activation(r) for r in obj.get("random_sample") or []],
        random_sample_by_quantile=(
            None if quant is None else [[_activation(r) for r in b] for b in quant]
        ),
        quantile_boundaries=None if bounds is None else [_float(x) for x in bounds],
        mean=_float(obj.get("mean")),
        variance=_float(obj.get("variance")),
        skewness=_float(obj.get("skewness")),
        kurtosis=_float(obj.get("kurtosis")),
        most_positive_activation_records=[
            _activation(r) for r in obj.get("most_positive_activation_records") or []
        ],
    )


def load_neuron_record(path: str | Path) -> NeuronRecord:
    """Read one NeuronRecord file (``.json``, or the first line of a ``.jsonl``).

    Raises:
        RunFormatError: unreadable, not JSON, or not a NeuronRecord.
    """
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
        if p.suffix == ".jsonl":
            text = next((line for line in text.splitlines() if line.strip()), "")
        return parse_record(json.loads(text))
    except (OSError, UnicodeDecodeError, ValueError, TypeError) as e:
        raise RunFormatError(
            f"{p} is not a readable NeuronRecord file ({type(e).__name__}: {e}); re-export it "
            "with `neuron-signatures export --format neuron_record`"
        ) from None


@dataclass
class NeuronRecordFolder:
    """A folder of NeuronRecord files: ``files[(layer, neuron)]`` is the file of that neuron."""

    root: Path
    files: dict[tuple[int, int], Path]

    @property
    def layers(self) -> list[int]:
        return sorted({layer for layer, _ in self.files})

    def neurons(self, layer: int) -> list[int]:
        return sorted(n for la, n in self.files if la == layer)

    def record(self, layer: int, neuron: int) -> NeuronRecord:
        path = self.files.get((int(layer), int(neuron)))
        if path is None:
            raise RunFormatError(f"{self.root} has no record of L{layer}/N{neuron}")
        return load_neuron_record(path)


def _scan(root: Path) -> dict[tuple[int, int], Path]:
    files: dict[tuple[int, int], Path] = {}
    for layer_dir in os.scandir(root):
        if not (layer_dir.name.isdigit() and layer_dir.is_dir()):
            continue
        for f in os.scandir(layer_dir.path):
            stem, dot, suffix = f.name.partition(".")
            if stem.isdigit() and dot and f".{suffix}" in SUFFIXES and f.is_file():
                key = (int(layer_dir.name), int(stem))
                if key not in files or suffix == "json":  # .json wins over .jsonl
                    files[key] = Path(f.path)
    return files


def open_neuron_records(folder: str | Path) -> NeuronRecordFolder:
    """List the ``{layer}/{neuron}.json`` (or ``.jsonl``) files of ``folder`` or ``folder/neurons``.

    Raises:
        RunFormatError: the folder is missing or holds no such file.
    """
    root = Path(folder).expanduser()
    if not root.is_dir():
        raise RunFormatError(f"NeuronRecord folder {root} does not exist")
    files = _scan(root)
    if not files and (root / "neurons").is_dir():
        root = root / "neurons"
        files = _scan(root)
    if not files:
        raise RunFormatError(
            f"{root} holds no NeuronRecord files: expected {{layer}}/{{neuron}}.json (as "
            "written by `neuron-signatures export --format neuron_record` or OpenAI's datasets)"
        )
    return NeuronRecordFolder(root, files)
