"""The neuron table of an atlas in SQLite (stats, explanations, scores, floors) and its queries:
text search (FTS5), filters, sorts. Every UI and the ``neurons`` command query it."""

from __future__ import annotations

from .query import (
    EXPLAINER_CHOICES,
    SORTS,
    IndexQuery,
    IndexResult,
    NeuronRow,
    fts_query,
    query_index,
    search_neurons,
)
from .table import (
    INDEX_FILE,
    SCHEMA_VERSION,
    IndexInfo,
    build_index,
    ensure_index,
    read_info,
    write_table,
)

__all__ = [
    "EXPLAINER_CHOICES",
    "INDEX_FILE",
    "SCHEMA_VERSION",
    "SORTS",
    "IndexInfo",
    "IndexQuery",
    "IndexResult",
    "NeuronRow",
    "build_index",
    "ensure_index",
    "fts_query",
    "query_index",
    "read_info",
    "search_neurons",
    "write_table",
]
