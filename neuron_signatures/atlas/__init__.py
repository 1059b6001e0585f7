"""The neuron atlas: every neuron's statistics, examples and interval samples over a corpus.

``open_atlas(A).neuron(layer, n)`` reads one neuron (no torch imported); ``build_atlas(cfg)``
builds an atlas with the dump's capture path and an on-device streaming reduction, and
``merge_atlases(parts, out)`` merges partial atlases of one plan, byte-identically to one build.
"""

from __future__ import annotations

from typing import Any

from .reader import Atlas, open_atlas
from .record import Example, Interval, NeuronAtlas, NeuronStats, WriteScore

__all__ = [
    "Atlas",
    "AtlasConfig",
    "Example",
    "Interval",
    "NeuronAtlas",
    "NeuronStats",
    "WriteScore",
    "build_atlas",
    "merge_atlases",
    "open_atlas",
]


def __getattr__(name: str) -> Any:
    # The builder imports torch: load it only when asked for.
    if name in ("AtlasConfig", "build_atlas", "merge_atlases"):
        from . import build

        return getattr(build, name)
    raise AttributeError(name)
