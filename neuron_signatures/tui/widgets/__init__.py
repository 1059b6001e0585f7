"""Widgets of the browser's main screen, one per module."""

from .header import RunHeader
from .ordered_input import OrderedInput
from .ranked_panel import RankedPanel
from .token_strip import TokenStrip
from .token_table import TokenTable

__all__ = ["OrderedInput", "RankedPanel", "RunHeader", "TokenStrip", "TokenTable"]
