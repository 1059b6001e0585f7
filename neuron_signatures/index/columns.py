"""The neuron table's names and columns, shared by :mod:`.table` (which builds it) and
:mod:`.rows` (which reads explanation records into rows)."""

from __future__ import annotations

SCHEMA_VERSION = 2
INDEX_FILE = "index.sqlite"
EXPLANATIONS = "explanations"
LLM_EXPLANATIONS = "explanations-llm"
EXPLANATIONS_MANIFEST = "explanations.json"
EXPLAINERS = ("token-lookup", "llm")  # the ``explainer`` values of explained rows

# (name, SQL type) of every column of ``neurons`` after ``id``, in insert order
COLUMNS: tuple[tuple[str, str], ...] = (
    ("layer", "INTEGER NOT NULL"),
    ("neuron", "INTEGER NOT NULL"),
    ("side", "TEXT"),  # "positive" | "negative" | NULL (no explanation)
    ("count", "INTEGER"),  # tokens the atlas statistics cover
    ("mean", "REAL"),
    ("std", "REAL"),
    ("min", "REAL"),
    ("max", "REAL"),
    ("density", "REAL"),  # share of tokens with a positive activation
    ("frac_above_threshold", "REAL"),
    ("explainer", "TEXT"),
    ("explanation", "TEXT"),
    ("score", "REAL"),  # top-and-random correlation (OpenAI's headline score)
    ("score_random_only", "REAL"),
    ("floor", "REAL"),  # the same scorer with another neuron's explanation
    ("floor_random_only", "REAL"),
    ("floor_from", "INTEGER"),
    ("heldout_tokens", "INTEGER"),  # tokens of the top-and-random held-out set
    ("explainer_model", "TEXT"),  # the LLM's model name; NULL for token-lookup
    ("detection", "REAL"),  # balanced accuracy of delphi's detection scorer (LLM only)
    ("floor_detection", "REAL"),
    ("fuzzing", "REAL"),  # balanced accuracy of delphi's fuzzing scorer (LLM only)
    ("floor_fuzzing", "REAL"),
)
N_SIDE = len(COLUMNS) - 9  # ``side`` and the columns after the statistics
NAMES = tuple(c for c, _ in COLUMNS)
STAT_KEYS = ("mean", "std", "min", "max", "density", "frac_above_threshold")
