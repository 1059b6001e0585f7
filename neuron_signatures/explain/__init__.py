"""Explanations and scores of atlas neurons, offline: held-out split, token-lookup explainer and
simulator, correlation scorers with floors, and the ``explain`` run that writes them.

``explain_atlas(cfg)`` explains and scores every neuron of an atlas's layers and writes
``A/explanations/`` (see :mod:`.output`); :func:`read_explanations` reads them back.
No torch at import: the score-time forward (:mod:`.forward`) loads the model only when run.
"""

from __future__ import annotations

from .lookup import LookupTable, explain_layer, render, simulate
from .output import read_explanations, read_tables
from .run import ExplainConfig, explain_atlas
from .scoring import correlation_score, pooled_pearson
from .split import LayerArrays, read_layer

__all__ = [
    "ExplainConfig",
    "LayerArrays",
    "LookupTable",
    "correlation_score",
    "explain_atlas",
    "explain_layer",
    "pooled_pearson",
    "read_explanations",
    "read_layer",
    "read_tables",
    "render",
    "simulate",
]
