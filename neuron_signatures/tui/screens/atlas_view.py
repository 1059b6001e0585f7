"""The atlas view: one neuron of an atlas (header, explanation, examples, write scores).

Keys change :class:`~neuron_signatures.tui.atlas_state.AtlasState`; :meth:`AtlasScreen.redraw`
then shows the neuron. A neuron read before comes from the state's cache at once; any other is
read in a worker thread (a few memory-mapped rows, but never on the event loop), the header saying
"reading" until it arrives. Only the latest read is shown: stepping fast skips the rest.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import ClassVar, TypeVar

from textual.app import ComposeResult
from textual.binding import BindingType
from textual.containers import Vertical
from textual.screen import Screen
from textual.widgets import Footer, Static
from textual.worker import Worker, WorkerState

from ...atlas import NeuronAtlas
from ...errors import NeuronSignaturesError
from ...neurons import NeuronId
from ..atlas_state import AtlasState
from ..keys import ATLAS_KEYS, atlas_help_text, bindings
from ..widgets import AtlasHeader, ExampleList, WriteScores
from ..widgets.explanation import ExplanationPanel, explanation_lines
from .dialogs import HelpScreen, ask

T = TypeVar("T")


def example_scale(rec: NeuronAtlas) -> float:
    """The colour scale of a neuron's strips: its largest ``|activation|`` over the atlas."""
    s = rec.stats
    return max(abs(s.max), abs(s.min)) if s.count else 0.0


class AtlasScreen(Screen[None]):
    """The atlas view. Keys: :data:`~neuron_signatures.tui.keys.ATLAS_KEYS`."""

    BINDINGS: ClassVar[list[BindingType]] = bindings(ATLAS_KEYS)  # type: ignore[assignment]
    AUTO_FOCUS = ""

    def __init__(
        self, state: AtlasState, show_run: Callable[[int, int], None] | None = None
    ) -> None:
        """``show_run(layer, neuron)`` switches to the run's prompts (the app's; ``None``: no run
        is open, and ``e`` says so)."""
        super().__init__()
        self.state = state
        self.show_run = show_run

    @property
    def has_run(self) -> bool:
        return self.show_run is not None

    def compose(self) -> ComposeResult:
        yield AtlasHeader(id="atlas-header")
        yield ExplanationPanel(id="atlas-explanation")
        with Vertical(id="atlas-examples"):
            yield ExampleList(id="top-examples")
            yield ExampleList(id="bottom-examples")
        yield WriteScores(id="write-scores")
        yield Static("", id="atlas-status", markup=False)
        yield Footer()

    def on_mount(self) -> None:
        self.say(self._view_line())
        self.redraw()

    def on_screen_resume(self) -> None:
        if self.is_mounted:
            self.redraw()

    @property
    def status(self) -> str:
        """The status line's text."""
        return str(self.query_one("#atlas-status", Static).content)

    def say(self, message: str) -> None:
        """Show ``message`` in the status line (until the next one)."""
        self.query_one("#atlas-status", Static).update(message)

    def _view_line(self) -> str:
        run = "e: the run's prompts" if self.has_run else "no run open (add --run_dir for e)"
        return f"atlas examples | {run} | ?: keys"

    # -- drawing ---------------------------------------------------------------------------
    def redraw(self) -> None:
        """Show the neuron of the state: from the cache now, or read in a worker."""
        s = self.state
        rec = s.cached()
        if rec is not None:
            self._draw(rec)
            return
        self.query_one(AtlasHeader).show(s, None)
        layer, neuron = s.key
        root = s.atlas.root

        def read() -> NeuronAtlas:
            explanation_lines(root, layer, neuron)  # reads (and caches) the layer's records
            return s.read(layer, neuron)

        self.run_worker(
            read,
            name=f"L{layer}/N{neuron}",
            group="atlas-read",
            exclusive=True,
            thread=True,
            exit_on_error=False,
        )

    def _draw(self, rec: NeuronAtlas) -> None:
        s = self.state
        scale = example_scale(rec)
        self.query_one(AtlasHeader).show(s, rec)
        self.query_one(ExplanationPanel).show(s.atlas.root, rec.layer, rec.index)
        top = self.query_one("#top-examples", ExampleList)
        top.show(f"top examples ({len(rec.top)}): the largest activations", rec.top, scale)
        self._show_bottom()
        bottom = self.query_one("#bottom-examples", ExampleList)
        bottom.show(f"bottom examples ({len(rec.bottom)}): the most negative", rec.bottom, scale)
        self.query_one(WriteScores).show(rec)

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        worker = event.worker
        if worker.group != "atlas-read":
            return
        if event.state == WorkerState.SUCCESS and isinstance(worker.result, NeuronAtlas):
            rec = worker.result
            self.state.remember(rec)
            if (rec.layer, rec.index) == self.state.key:
                self._draw(rec)
        elif event.state == WorkerState.ERROR:
            self.say(f"could not read {worker.name}: {worker.error}")

    # -- navigation ------------------------------------------------------------------------
    def _moved(self) -> None:
        """Show the new neuron; the status line's last message goes."""
        self.say(self._view_line())
        self.redraw()

    def action_layer(self, delta: int) -> None:
        self.state.move_layer(delta)
        self._moved()

    def action_neuron(self, delta: int) -> None:
        self.state.move_neuron(delta)
        self._moved()

    def action_scroll(self, delta: int) -> None:
        for lst in self.query(ExampleList):
            lst.scroll_to(y=max(0, int(lst.scroll_offset.y) + delta), animate=False)

    def action_toggle_bottom(self) -> None:
        self.state.toggle_bottom()
        self._show_bottom()

    def _show_bottom(self) -> None:
        """The bottom list under the top one, or the top list alone over the whole height."""
        shown = self.state.show_bottom
        self.query_one("#bottom-examples", ExampleList).display = shown
        self.query_one("#atlas-examples").set_class(not shown, "top-only")

    def action_examples(self) -> None:
        """Switch to the run browser on the same neuron (when a run is open)."""
        if self.show_run is None:
            self.say("no run is open: start with --run_dir RUN as well to see its prompts")
            return
        try:
            self.show_run(*self.state.key)
        except NeuronSignaturesError as e:
            self.say(str(e))

    # -- dialogs ---------------------------------------------------------------------------
    def _ask(
        self, title: str, hint: str, parse: Callable[[str], T], apply: Callable[[T], None]
    ) -> None:
        ask(self, title, hint, parse, apply, self._moved)

    def action_goto_neuron(self) -> None:
        s = self.state
        hint = (
            f"neuron 0..{s.atlas.d_mlp - 1} of layer {s.layer}, or any neuron as "
            f"L{s.layer}/N{s.neuron} or {s.layer}:{s.neuron} (atlas layers {s.layers_hint()})"
        )
        self._ask("Go to neuron", hint, s.parse_neuron, s.goto)

    def action_goto_layer(self) -> None:
        s = self.state
        self._ask("Go to layer", f"atlas layers {s.layers_hint()}", s.parse_layer, s.goto_layer)

    def action_find_explained(self) -> None:
        """Find neurons by explanation; the one picked opens here."""
        from .explain_filter import ExplainFilterDialog

        def done(nid: NeuronId | None) -> None:
            if nid is None:
                return
            try:
                self.state.goto(nid)
            except NeuronSignaturesError as e:
                self.say(str(e))
                return
            self._moved()

        self.app.push_screen(ExplainFilterDialog(self.state.atlas.root), done)

    def action_help(self) -> None:
        self.app.push_screen(HelpScreen(atlas_help_text()))

    def action_quit(self) -> None:
        self.app.exit()
