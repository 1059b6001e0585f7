"""Inputs of the signatures analysis: its thresholds (defaults, TOML, validation) and the
neuron selection (a ranking file or explicit lists).

The defaults reproduce the published role thresholds (measured on Gemma 2 2B, 26 layers); the
early/late layer limits scale with the model's depth unless given explicitly. Every field can be
set in a TOML file (top level or a ``[signatures]`` table); see ``docs/signatures.example.toml``.
"""

from __future__ import annotations

import hashlib
import math
import tomllib
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any

import numpy as np

from ..analysis.results import load_ranking
from ..analysis.tables import safe_name
from ..errors import BadArgumentError
from ..neurons import parse_neuron_list

PUBLISHED_DEPTH = 26  # Gemma 2 2B, where early = layer <= 3 and late = layer >= 7
PUBLISHED_EARLY_MAX = 3
PUBLISHED_LATE_MIN = 7

DEFAULT_BLACKLIST = (
    "", "<bos>", "<eos>", "<pad>", "<unk>", "<start_of_turn>", "<end_of_turn>",
    "entity", "attribute", "relationship", ":", "user", "model",
)  # fmt: skip
DEFAULT_BOTH_WAYS = (",", ";", ":", ".", "!", "?", "-", "(", ")", '"', "'")

_CHOICES = {
    "peak_mode": ("abs", "signed"),
    "cosine_alignment": ("right", "left", "resample"),
    "relationship_aggregate": ("sum", "mean"),
}


@dataclass(frozen=True)
class SignatureConfig:
    """Every choice of the signatures analysis.

    Attributes:
        peak_mode: ``abs``: peaks, percentiles, density and sparsity use ``|activation|`` (as the
            peaks analysis does); ``signed``: the raw activation (negative firing is ignored).
        cosine_alignment: how a probe's pattern is aligned with the seed's (BOS dropped):
            ``right`` keeps the last ``min(n_probe, n_seed)`` tokens of both, ``left`` the first,
            ``resample`` linearly interpolates both onto ``max(n_probe, n_seed)`` points.
        min_peak: a probe counts as *active* for a neuron when its peak is above this ...
        min_peak_ratio: ... and at least this share of the neuron's largest peak over the
            probes (0 disables): probes where the neuron barely fires do not vote on its
            peak token, role or sparsity.
        semantic_peak_consistency: Semantic needs ``peak_consistency >=`` this.
        semantic_max_distinct_peaks: Semantic needs ``n_distinct_peaks <=`` this.
        semantic_confidence: Semantic needs an early layer or ``semantic_confidence >=`` this:
            the evidence a later layer needs. ``semantic_confidence`` is the Wilson lower bound
            of ``peak_consistency`` over the probes containing the token, so with the defaults
            a late neuron needs e.g. 4 of 4 such probes on its token, 7 of 8 or 9 of 10
            (3 of 3 or 8 of 10 are too little).
        semantic_confidence_z: standard errors of that lower bound (1.96: 95%; 0: the plain
            share, i.e. ``peak_consistency``).
        relationship_max_sparsity: Relationship needs ``median_sparsity <`` this.
        say_x_func_vs_sem: Say X needs ``func_vs_sem >=`` this.
        say_x_functional_confidence: Say X needs ``functional_confidence >=`` this.
        say_x_window: Say X looks for its target within this many positions of the peak.
        say_x_both_ways: functional tokens whose target is searched both ways (nearest first,
            forward on ties); ``say_x_backward`` those searched backward; any other: forward.
        say_x_backward: see ``say_x_both_ways``.
        say_x_write_top_n: the Say X write check agrees when the named token is among the
            neuron's ``say_x_write_top_n`` most promoted tokens over the whole vocabulary.
        early_layer_max: last "early" layer; ``None``: ``round(3 / 26 * n_layers)``.
        late_layer_min: first "late" layer; ``None``: ``round(7 / 26 * n_layers)``.
        blacklist: tokens (compared stripped and case-folded) never used as names or Say X
            targets, and functional peaks on them get no Say X target (the default holds the
            probe format's ``entity:`` / ``attribute:`` / ``relationship:`` labels and colon).
        functional_tokens: replaces the shared functional-token set when given.
        relationship_aggregate: ``sum`` or ``mean`` of a token's activation over its occurrences
            in the probes, used to name Relationship neurons.
        semantic_format, relationship_format, say_x_format: name templates (``{token}``).
    """

    peak_mode: str = "abs"
    cosine_alignment: str = "right"
    min_peak: float = 0.0
    min_peak_ratio: float = 0.5
    semantic_peak_consistency: float = 0.80
    semantic_max_distinct_peaks: int = 1
    semantic_confidence: float = 0.50
    semantic_confidence_z: float = 1.96
    relationship_max_sparsity: float = 0.45
    say_x_func_vs_sem: float = 0.50
    say_x_functional_confidence: float = 0.90
    say_x_window: int = 5
    say_x_both_ways: tuple[str, ...] = DEFAULT_BOTH_WAYS
    say_x_backward: tuple[str, ...] = ()
    say_x_write_top_n: int = 20
    early_layer_max: int | None = None
    late_layer_min: int | None = None
    blacklist: tuple[str, ...] = DEFAULT_BLACKLIST
    functional_tokens: tuple[str, ...] | None = None
    relationship_aggregate: str = "mean"
    semantic_format: str = "{token}"
    relationship_format: str = "({token}) related"
    say_x_format: str = "Say ({token})"

    def __post_init__(self) -> None:
        for key, allowed in _CHOICES.items():
            if getattr(self, key) not in allowed:
                raise BadArgumentError(
                    f"signatures config: {key} = {getattr(self, key)!r} is not one of {allowed}"
                )
        if self.say_x_window < 1:
            raise BadArgumentError("signatures config: say_x_window must be >= 1")
        if self.say_x_write_top_n < 1:
            raise BadArgumentError("signatures config: say_x_write_top_n must be >= 1")
        if not self.semantic_confidence_z >= 0:
            raise BadArgumentError("signatures config: semantic_confidence_z must be >= 0")
        for key in ("semantic_format", "relationship_format", "say_x_format"):
            if "{token}" not in getattr(self, key):
                raise BadArgumentError(f"signatures config: {key} must contain {{token}}")

    def layer_bounds(self, n_layers: int) -> tuple[int, int]:
        """``(early_layer_max, late_layer_min)`` for a model of ``n_layers`` layers."""
        early = self.early_layer_max
        late = self.late_layer_min
        if early is None:
            early = math.floor(PUBLISHED_EARLY_MAX / PUBLISHED_DEPTH * n_layers + 0.5)
        if late is None:
            late = math.floor(PUBLISHED_LATE_MIN / PUBLISHED_DEPTH * n_layers + 0.5)
        return early, late

    def to_dict(self, n_layers: int | None = None) -> dict[str, Any]:
        """Plain dict (for the meta file); with ``n_layers``, the resolved layer limits too."""
        d = asdict(self)
        if n_layers is not None:
            d["early_layer_max_resolved"], d["late_layer_min_resolved"] = self.layer_bounds(
                n_layers
            )
        return d


def config_from_dict(data: dict[str, Any], source: str = "config") -> SignatureConfig:
    """Build a config from a TOML-like dict; unknown keys and wrong types are errors."""
    table = data.get("signatures", data)
    if not isinstance(table, dict):
        raise BadArgumentError(f"{source}: [signatures] must be a table")
    known = {f.name: f for f in fields(SignatureConfig)}
    unknown = sorted(set(table) - set(known))
    if unknown:
        raise BadArgumentError(
            f"{source}: unknown key(s) {', '.join(unknown)}; valid keys: {', '.join(known)}"
        )
    defaults = SignatureConfig()
    values = {
        key: _checked(key, value, getattr(defaults, key), source) for key, value in table.items()
    }
    return replace(defaults, **values)


def _checked(key: str, value: Any, default: Any, source: str) -> Any:
    """``value`` converted to the field's type, or a :class:`BadArgumentError`."""
    if isinstance(default, tuple) or key == "functional_tokens":
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            return tuple(value)
        raise BadArgumentError(f"{source}: {key} must be a list of strings, got {value!r}")
    if isinstance(value, bool):
        raise BadArgumentError(f"{source}: {key} must not be a boolean, got {value!r}")
    if isinstance(default, float) and isinstance(value, int | float):
        return float(value)
    if (default is None or isinstance(default, int)) and isinstance(value, int):
        return value
    if isinstance(default, str) and isinstance(value, str):
        return value
    raise BadArgumentError(f"{source}: {key} = {value!r} has the wrong type (default {default!r})")


def load_config(path: str | Path | None) -> SignatureConfig:
    """The defaults, or a TOML file's values over them.

    Raises:
        BadArgumentError: missing file, invalid TOML, unknown key or bad value.
    """
    if path is None:
        return SignatureConfig()
    p = Path(path)
    if not p.is_file():
        raise BadArgumentError(
            f"--config {p} does not exist: give a TOML file like docs/signatures.example.toml"
        )
    try:
        data = tomllib.loads(p.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise BadArgumentError(f"--config {p} is not valid TOML ({e}): fix the file") from None
    return config_from_dict(data, source=str(p))


@dataclass(frozen=True)
class NeuronSelection:
    """The neurons to analyse, best first: ``layers``/``neurons`` ``[K]``; ``influence [K]`` when
    the source has it (NaN for missing rows); ``source`` names it; ``tag`` goes in file names."""

    layers: np.ndarray
    neurons: np.ndarray
    influence: np.ndarray | None
    source: str
    tag: str

    def __len__(self) -> int:
        return len(self.layers)


def _selection(pairs: list[tuple[int, int]], infl: list[float] | None, source: str, tag: str,
               top_n: int | None) -> NeuronSelection:  # fmt: skip
    """Deduplicate (first wins), cut to ``top_n`` and pack."""
    seen: dict[tuple[int, int], int] = {}
    for i, pair in enumerate(pairs):
        seen.setdefault(pair, i)
    keep = sorted(seen.values())[: top_n if top_n is not None else None]
    if not keep:
        raise BadArgumentError(f"{source} selects no neuron: give at least one")
    arr = np.array([pairs[i] for i in keep], np.int64).reshape(-1, 2)
    influence = None if infl is None else np.array([infl[i] for i in keep], np.float64)
    return NeuronSelection(arr[:, 0], arr[:, 1], influence, source, tag)


def read_selection(path: str | Path, top_n: int | None = None) -> NeuronSelection:
    """The first ``top_n`` neurons of a ``top_neurons*.json``, ``influence_*.json``/``.csv``
    (CSV rows sorted by ``|influence|`` descending) or a ``signatures_*.json``."""
    p = Path(path)
    if not p.is_file():
        raise BadArgumentError(
            f"--neurons {p} does not exist: give a top_neurons*.json or influence_*.json/.csv "
            "from a run's analysis folder"
        )
    tag = safe_name(p.stem) + (f"_top{top_n}" if top_n is not None else "")
    if p.suffix.lower() == ".csv":
        import pandas as pd

        df = pd.read_csv(p)
        if not {"layer", "neuron"} <= set(df.columns):
            raise BadArgumentError(f"--neurons {p} has no layer/neuron columns")
        if "influence" in df.columns:
            df = df.iloc[np.argsort(-df["influence"].abs().to_numpy(), kind="stable")]
        pairs = list(zip(df["layer"].astype(int), df["neuron"].astype(int), strict=True))
        infl = df["influence"].astype(float).tolist() if "influence" in df.columns else None
        return _selection(pairs, infl, p.name, tag, top_n)
    ranking = load_ranking(p)
    if ranking is None or not ranking.neurons:
        raise BadArgumentError(f"--neurons {p} is not a ranking JSON with neurons")
    rows = sorted(ranking.neurons, key=lambda r: r.rank)
    values = [r.fields.get("influence") for r in rows]
    known = any(v is not None for v in values)
    infl = [float(v) if v is not None else np.nan for v in values] if known else None
    return _selection([(r.layer, r.neuron) for r in rows], infl, p.name, tag, top_n)


def _explicit_tag(pairs: list[tuple[int, int]]) -> str:
    digest = hashlib.sha1(repr(pairs).encode()).hexdigest()[:8]
    return f"explicit{len(pairs)}_{digest}"


def parse_neuron_ids(text: str) -> NeuronSelection:
    """``"3:12,L5/N40"`` → neurons (3, 12) and (5, 40) (any form of
    :func:`neuron_signatures.neurons.parse_neuron`)."""
    try:
        pairs = [(n.layer, n.index) for n in parse_neuron_list(text, what="--neuron_ids")]
    except BadArgumentError:
        raise BadArgumentError(
            f"--neuron_ids {text!r} is not a list like 3:12,5:40 or L3/N12,L5/N40 (layer:neuron)"
        ) from None
    return _selection(pairs, None, "--neuron_ids", _explicit_tag(pairs), None)


def explicit_selection(layer_list: str, neuron_list: str) -> NeuronSelection:
    """``--layer_list 3,5 --neuron_list 12,40`` (pairs in order; one layer applies to all)."""
    try:
        layers = [int(x) for x in layer_list.split(",") if x.strip()]
        neurons = [int(x) for x in neuron_list.split(",") if x.strip()]
    except ValueError:
        raise BadArgumentError(
            "--layer_list/--neuron_list must be integer lists like 3,5"
        ) from None
    if len(layers) == 1:
        layers = layers * len(neurons)
    if len(layers) != len(neurons):
        raise BadArgumentError(
            f"--layer_list has {len(layers)} layers but --neuron_list {len(neurons)} neurons: "
            "give one layer per neuron, or a single layer for all"
        )
    pairs = list(zip(layers, neurons, strict=True))
    return _selection(pairs, None, "--layer_list/--neuron_list", _explicit_tag(pairs), None)
