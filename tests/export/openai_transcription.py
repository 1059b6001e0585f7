"""A transcription of OpenAI's NeuronRecord dataclasses and their JSON (de)serialisation, to test
our files against without the ``neuron-explainer`` package (the dev extra installs it, and
``test_files_load_with_the_real_neuron_explainer`` checks the same files with it).

Sources (github.com/openai/automated-interpretability):

- ``neuron-explainer/neuron_explainer/activations/activations.py``: ``ActivationRecord(tokens,
  activations)``, ``NeuronId(layer_index, neuron_index)``, ``NeuronRecord(neuron_id, random_sample,
  random_sample_by_quantile, quantile_boundaries, mean, variance, skewness, kurtosis,
  most_positive_activation_records)``, each a registered ``@dataclass`` subclass of
  ``FastDataclass``.
- ``neuron-explainer/neuron_explainer/fast_dataclasses/fast_dataclasses.py``: ``FastDataclass`` has
  one field ``dataclass_name`` (set in ``__post_init__``); ``dumps(obj)`` is
  ``orjson.dumps(obj, option=OPT_SERIALIZE_NUMPY)``; ``loads(s)`` is ``json.loads`` with an object
  hook that rebuilds the registered dataclass named by ``dataclass_name``, or, without it, the one
  whose field names equal (or include) the object's keys.

``orjson_dumps`` below is ``dumps``: orjson serialises a dataclass instance's ``__dict__``, so the
fields come in ``__init__`` order and ``dataclass_name`` (set by ``__post_init__``) last; compact,
UTF-8 as is, NaN and infinities as ``null``.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field, fields, is_dataclass
from functools import partial
from typing import Any

dataclasses_by_name: dict[str, type] = {}
dataclasses_by_fieldnames: dict[frozenset[str], type] = {}


@dataclass
class FastDataclass:
    dataclass_name: str = field(init=False)

    def __post_init__(self) -> None:
        self.dataclass_name = self.__class__.__name__


def register_dataclass(cls: Any) -> Any:
    assert is_dataclass(cls)
    dataclasses_by_name[cls.__name__] = cls
    names = frozenset(f.name for f in fields(cls) if f.name != "dataclass_name")
    dataclasses_by_fieldnames[names] = cls
    return cls


@register_dataclass
@dataclass
class ActivationRecord(FastDataclass):
    tokens: list[str]
    activations: list[float]


@register_dataclass
@dataclass
class NeuronId(FastDataclass):
    layer_index: int
    neuron_index: int


@register_dataclass
@dataclass
class NeuronRecord(FastDataclass):
    neuron_id: NeuronId
    random_sample: list[ActivationRecord] = field(default_factory=list)
    random_sample_by_quantile: list[list[ActivationRecord]] | None = None
    quantile_boundaries: list[float] | None = None
    mean: float | None = math.nan
    variance: float | None = math.nan
    skewness: float | None = math.nan
    kurtosis: float | None = math.nan
    most_positive_activation_records: list[ActivationRecord] = field(default_factory=list)


def _object_hook(d: Any, backwards_compatible: bool = True) -> Any:
    if isinstance(d, list):
        return [_object_hook(x, backwards_compatible) for x in d]
    if not isinstance(d, dict):
        return d
    cls = None
    if "dataclass_name" in d:
        cls = dataclasses_by_name.get(d["dataclass_name"])
    elif backwards_compatible:
        keys = frozenset(d.keys())
        cls = dataclasses_by_fieldnames.get(keys)
        if cls is None and keys:
            cls = next((c for k, c in dataclasses_by_fieldnames.items() if keys <= k), None)
    new = {k: _object_hook(v, backwards_compatible) for k, v in d.items() if k != "dataclass_name"}
    return cls(**new) if cls is not None else new


def loads(s: str | bytes, backwards_compatible: bool = True) -> Any:
    return json.loads(
        s, object_hook=partial(_object_hook, backwards_compatible=backwards_compatible)
    )


def orjson_dumps(obj: Any) -> bytes:
    import orjson

    return bytes(orjson.dumps(obj, option=orjson.OPT_SERIALIZE_NUMPY))
