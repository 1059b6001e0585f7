"""The Textual apps: the browser of one run, and the atlas view (with a run beside it or not).

Build :class:`BrowserApp` from a :class:`~neuron_signatures.tui.state.BrowserState` (validated
before the app starts, so bad flags never reach the terminal UI) and optionally a ranking cursor;
by default the run's ``analysis/`` folder is read for rankings and signatures. Build
:class:`AtlasApp` from an :class:`~neuron_signatures.tui.atlas_state.AtlasState`, and a run's
state to switch between the atlas's examples and the run's prompts with ``e``.
"""

from __future__ import annotations

from pathlib import Path

from textual.app import App
from textual.screen import Screen

from ..errors import NeuronSignaturesError
from .atlas_state import AtlasState
from .ranking import RankingCursor
from .screens import AtlasScreen, BrowserScreen, LinkedBrowserScreen
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


class AtlasApp(App[None]):
    """One neuron of an atlas at a time; with a run, ``e`` switches to the run's prompts and back
    (both views stay on the same neuron when the other side has it)."""

    CSS_PATH = BrowserApp.CSS_PATH
    TITLE = "neuron-signatures browse --atlas"
    ENABLE_COMMAND_PALETTE = False

    def __init__(
        self,
        atlas: AtlasState,
        run: BrowserState | None = None,
        ranking: RankingCursor | None = None,
    ) -> None:
        super().__init__()
        self.atlas = atlas
        self.state = run
        self.atlas_screen = AtlasScreen(atlas, self.show_run if run is not None else None)
        self.install_screen(self.atlas_screen, "atlas")
        self.run_screen: LinkedBrowserScreen | None = None
        if run is not None:
            cursor = ranking if ranking is not None else RankingCursor.load(run.run.run_dir)
            cursor.atlas, cursor.run_manifest = atlas.atlas, run.run.manifest  # corpus check
            self.run_screen = LinkedBrowserScreen(run, cursor, self.show_atlas)
            self.install_screen(self.run_screen, "run")

    def on_mount(self) -> None:
        # Pushed over the default screen (not made the default one), so `e` can switch it out.
        self.push_screen("atlas")

    def show_run(self, layer: int, neuron: int) -> None:
        """Switch to the run's prompts, on neuron ``layer/neuron`` when the run captured it.

        Raises:
            NeuronSignaturesError: no run is open.
        """
        if self.run_screen is None:
            raise NeuronSignaturesError("no run is open: start with --run_dir RUN as well")
        try:
            self.run_screen.state.jump(layer, neuron)
        except NeuronSignaturesError as e:
            self.run_screen.notify(f"{e}; showing the run's last neuron", markup=False)
        self.switch_screen("run")

    def show_atlas(self, layer: int, neuron: int) -> None:
        """Switch to the atlas view, on neuron ``layer/neuron`` when the atlas has it."""
        try:
            self.atlas.jump(layer, neuron)
        except NeuronSignaturesError as e:
            self.atlas_screen.say(f"{e}; showing the atlas's last neuron")
        self.switch_screen("atlas")
