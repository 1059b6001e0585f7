"""Screens of the browser: the main view and its modal dialogs, one per module."""

from .browser import BrowserScreen
from .dialogs import GoToDialog, HelpScreen
from .prompt_picker import PromptPicker

__all__ = ["BrowserScreen", "GoToDialog", "HelpScreen", "PromptPicker"]
