"""The neuron atlas: every neuron's statistics, examples and interval samples over a corpus.

``open_atlas(A).neuron(layer, n)`` reads one neuron (no torch imported); ``build_atlas(cfg)``
builds an atlas with the dump's capture path and an on-device streaming reduction, and
``merge_atlases(parts, out)`` merges partial atlases of one plan, byte-identically to one build.
``search_token`` / ``search_text`` find the neurons that peak on a token or fire on a text.
"""

from __future__ import annotations

from typing import Any

from .reader import Atlas, open_atlas
from .record import Example, Interval, NeuronAtlas, NeuronStats, WriteScore
from .search import (
    TextHit,
    TextSearch,
    TokenHit,
    TokenSearch,
    load_atlas_model,
    search_text,
    search_token,
)

__all__ = [
    "Atlas",
    "AtlasConfig",
    "Example",
    "Interval",
    "NeuronAtlas",
    "NeuronStats",
    "TextHit",
    "TextSearch",
    "TokenHit",
    "TokenSearch",
    "WriteScore",
    "build_atlas",
    "load_atlas_model",
    "merge_atlases",
    "open_atlas",
    "search_text",
    "search_token",
]


def __getattr__(name: str) -> Any:
    # The builder imports torch: load it only when asked for.
    if name in ("AtlasConfig", "build_atlas", "merge_atlases"):
        from . import build

        return getattr(build, name)
    raise AttributeError(name)
