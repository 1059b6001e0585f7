"""The Textual app: opens on the browser screen for one run.

Build it from a :class:`~neuron_signatures.tui.state.BrowserState` (validated before the app
starts, so bad flags never reach the terminal UI) and optionally a ranking cursor; by default the
run's ``analysis/`` folder is read for rankings and signatures.
"""

from __future__ import annotations

from pathlib import Path

from textual.app import App
from textual.screen import Screen

from .ranking import RankingCursor
from .screens import BrowserScreen
from .state import BrowserState


class BrowserApp(App[None]):
    """Terminal browser of a run's MLP neuron activations."""

    CSS_PATH = str(Path(__file__).with_name("app.tcss"))  # absolute: subclasses live elsewhere
    TITLE = "neuron-signatures browse"
    ENABLE_COMMAND_PALETTE = False

    def __init__(self, state: BrowserState, ranking: RankingCursor | None = None) -> None:
        super().__init__()
        self.state = state
        self.ranking = ranking if ranking is not None else RankingCursor.load(state.run.run_dir)

    def get_default_screen(self) -> Screen[None]:
        return BrowserScreen(self.state, self.ranking)

    @property
    def browser(self) -> BrowserScreen:
        """The main screen (also while a dialog is open on top of it)."""
        screen = self.screen_stack[0]
        assert isinstance(screen, BrowserScreen)
        return screen
