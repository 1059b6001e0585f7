"""Widgets of the browser's main screen, one per module."""

from .header import RunHeader
from .ranked_panel import RankedPanel
from .token_strip import TokenStrip
from .token_table import TokenTable

__all__ = ["RankedPanel", "RunHeader", "TokenStrip", "TokenTable"]
