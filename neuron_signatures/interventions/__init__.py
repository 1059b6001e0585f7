"""Interventions: set, scale or add to MLP neurons (``blocks.{l}.mlp.hook_post``) and compare.

:mod:`.spec` parses and validates the edits (no torch); :mod:`.run` compares the next-token
prediction before and after one or several sets in one batched forward; :mod:`.generate` writes
continuations side by side; :mod:`.report` formats the result as text.
"""

from .run import InterventionResult, RowResult, TokenStat, add_generation, run_interventions
from .spec import (
    OPS,
    Edit,
    InterventionSet,
    Positions,
    check_sets,
    parse_edit,
    parse_positions,
    parse_set,
)

__all__ = [
    "OPS",
    "Edit",
    "InterventionResult",
    "InterventionSet",
    "Positions",
    "RowResult",
    "TokenStat",
    "add_generation",
    "check_sets",
    "parse_edit",
    "parse_positions",
    "parse_set",
    "run_interventions",
]
