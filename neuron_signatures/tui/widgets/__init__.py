"""Widgets of the browser's screens, one per module."""

from .atlas_header import AtlasHeader
from .example_list import ExampleList
from .header import RunHeader
from .ordered_input import OrderedInput
from .ranked_panel import RankedPanel
from .token_strip import TokenStrip
from .token_table import TokenTable
from .write_scores import WriteScores

__all__ = [
    "AtlasHeader",
    "ExampleList",
    "OrderedInput",
    "RankedPanel",
    "RunHeader",
    "TokenStrip",
    "TokenTable",
    "WriteScores",
]
