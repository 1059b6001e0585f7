"""Screens of the browser: the run view, the atlas view and their modal dialogs."""

from .atlas_view import AtlasScreen
from .browser import BrowserScreen, LinkedBrowserScreen
from .dialogs import GoToDialog, HelpScreen
from .explain_filter import ExplainFilterDialog
from .prompt_picker import PromptPicker

__all__ = [
    "AtlasScreen",
    "BrowserScreen",
    "ExplainFilterDialog",
    "GoToDialog",
    "HelpScreen",
    "LinkedBrowserScreen",
    "PromptPicker",
]
