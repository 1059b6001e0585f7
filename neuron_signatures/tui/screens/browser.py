"""The main screen: header, token table, token strip and the ranked panel, driven by the keys.

Every key changes :class:`~neuron_signatures.tui.state.BrowserState` (or the ranking cursor) and
then :meth:`BrowserScreen.redraw` pushes the new view into the widgets; nothing is computed here.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import ClassVar, TypeVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.screen import Screen
from textual.widgets import Footer, OptionList

from ...errors import NeuronSignaturesError
from ..keys import LINKED_KEYS, bindings, help_text
from ..ranking import RankingCursor
from ..state import BrowserState
from ..widgets import RankedPanel, RunHeader, TokenStrip, TokenTable
from ..widgets.token_table import table_view
from .dialogs import HelpScreen, ask
from .prompt_picker import PromptPicker

T = TypeVar("T")


class BrowserScreen(Screen[None]):
    """The activation browser. Keys: see :mod:`neuron_signatures.tui.keys`."""

    # ``e`` is the linked browser's key (the atlas's examples); here it says why it does nothing.
    BINDINGS: ClassVar[list[BindingType]] = [  # type: ignore[assignment]
        *bindings(),
        Binding("e", "examples", "atlas examples", show=False),
    ]
    AUTO_FOCUS = ""  # nothing focused: the arrows drive the state, not a widget

    def __init__(self, state: BrowserState, ranking: RankingCursor) -> None:
        super().__init__()
        self.state = state
        self.ranking = ranking

    def compose(self) -> ComposeResult:
        yield RunHeader(id="header")
        with Horizontal(id="body"):
            with Vertical(id="main"):
                yield TokenTable(id="table")
                yield TokenStrip(id="strip")
            yield RankedPanel(id="ranked")
        yield Footer()

    def on_mount(self) -> None:
        panel = self.query_one(RankedPanel)
        panel.display = bool(self.ranking.rankings)
        panel.load(self.ranking)
        self.redraw()

    # -- drawing ---------------------------------------------------------------------------
    def redraw(self) -> None:
        """Show the state: one neuron column of the prompt on screen is all that is read."""
        s = self.state
        values, stats = s.values(), s.stats()
        p = s.prompt
        self.query_one(RunHeader).show(s, values, stats)
        self.query_one(TokenTable).show(table_view(s, values, stats))
        n_bos = 1 if s.run.prepend_bos else 0
        self.query_one(TokenStrip).show(s.prompt_idx, p.tokens, values, s.ctx_idx, n_bos)
        if self.ranking.rankings:
            self._sync_panel()

    def _sync_panel(self) -> None:
        """Highlight the current neuron in the ranking when it is listed; show its signature."""
        s, panel = self.state, self.query_one(RankedPanel)
        row = self.ranking.locate(s.layer, s.neuron)
        if row is not None and row != self.ranking.row:
            self.ranking.row = row
            panel.highlight(row)
        panel.show_signature(self.ranking, s.layer, s.neuron)

    # -- navigation ------------------------------------------------------------------------
    def action_layer(self, delta: int) -> None:
        self.state.move_layer(delta)
        self.redraw()

    def action_token(self, delta: int) -> None:
        self.state.move_token(delta)
        self.redraw()

    def action_neuron(self, delta: int) -> None:
        self.state.move_neuron(delta)
        self.redraw()

    def action_prompt(self, delta: int) -> None:
        self.state.move_prompt(delta)
        self.redraw()

    def action_toggle_all(self) -> None:
        self.state.toggle_all()
        self.redraw()

    # -- dialogs ---------------------------------------------------------------------------
    def _ask(
        self, title: str, hint: str, parse: Callable[[str], T], apply: Callable[[T], None]
    ) -> None:
        ask(self, title, hint, parse, apply, self.redraw)

    def action_goto_neuron(self) -> None:
        s = self.state
        hint = (
            f"neuron 0..{s.run.d_mlp - 1} of layer {s.layer}, or any neuron as "
            f"L{s.layer}/N{s.neuron} or {s.layer}:{s.neuron}"
        )
        self._ask("Go to neuron", hint, s.parse_neuron, s.goto)

    def action_goto_layer(self) -> None:
        layers = self.state.run.layers
        hint = f"layer {layers[0]}..{layers[-1]}"
        if len(layers) != layers[-1] - layers[0] + 1:
            hint = "captured layers: " + ", ".join(map(str, layers))
        self._ask("Go to layer", hint, self.state.parse_layer, self.state.goto_layer)

    def action_goto_ctx(self) -> None:
        hint = f"token position 0..{self.state.seq_len - 1} of {self.state.prompt.probe_id}"
        self._ask("Go to ctx_idx", hint, self.state.parse_ctx, self.state.goto_ctx)

    def _pick(self, focus_search: bool) -> None:
        def done(index: int | None) -> None:
            if index is not None:
                self.state.goto_prompt(index)
                self.redraw()

        picker = PromptPicker(self.state.run.prompts, self.state.prompt_idx, focus_search)
        self.app.push_screen(picker, done)

    def action_search(self) -> None:
        self._pick(focus_search=True)

    def action_pick_prompt(self) -> None:
        self._pick(focus_search=False)

    def action_help(self) -> None:
        self.app.push_screen(HelpScreen())

    def action_examples(self) -> None:
        self.notify(
            "no atlas is open: start with `neuron-signatures browse --run_dir "
            f"{self.state.run.run_dir} --atlas ATLAS` to switch to this neuron's atlas examples "
            "with e",
            severity="warning",
            markup=False,
        )

    def action_quit(self) -> None:
        self.app.exit()

    # -- ranked panel ----------------------------------------------------------------------
    def _no_rankings(self) -> bool:
        if self.ranking.rankings:
            return False
        self.notify(
            f"no analysis files in {self.state.run.run_dir / 'analysis'}: run "
            "`neuron-signatures analyze` to rank neurons",
            severity="warning",
            markup=False,
        )
        return True

    def action_focus_ranked(self) -> None:
        if self._no_rankings():
            return
        options = self.query_one("#ranked-list", OptionList)
        if options.has_focus:
            self.set_focus(None)
        else:
            options.focus()

    def action_leave_panel(self) -> None:
        self.set_focus(None)

    def action_ranked(self, delta: int) -> None:
        if self._no_rankings():
            return
        ranked = self.ranking.step(delta)
        if ranked is not None:
            self._go(self.ranking.row)

    def action_next_signatures(self) -> None:
        source = self.ranking.cycle_signatures()
        if source is None:
            self.notify(
                f"no signatures_*.json in {self.state.run.run_dir / 'analysis'}: run "
                "`neuron-signatures signatures` to name neurons",
                severity="warning",
                markup=False,
            )
            return
        self.notify(f"signatures from {source}", markup=False)
        if self.ranking.rankings:
            self._sync_panel()

    def action_next_ranking(self) -> None:
        if self._no_rankings():
            return
        self.ranking.cycle(1)
        self.query_one(RankedPanel).load(self.ranking)

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        if event.option_list.id == "ranked-list" and event.option.id is not None:
            self.ranking.select(int(event.option.id))
            self._go(self.ranking.row)

    def _go(self, row: int) -> None:
        target = self.ranking.target(self.ranking.rows[row])
        self.query_one(RankedPanel).highlight(row)
        try:
            self.state.jump(target.layer, target.neuron, target.prompt_id, target.ctx_idx)
        except NeuronSignaturesError as e:
            self.notify(str(e), severity="error", markup=False)
            return
        self.redraw()


class LinkedBrowserScreen(BrowserScreen):
    """The run browser when an atlas is open too: ``e`` shows the atlas's view of the neuron."""

    BINDINGS: ClassVar[list[BindingType]] = bindings(LINKED_KEYS)  # type: ignore[assignment]

    def __init__(
        self, state: BrowserState, ranking: RankingCursor, show_atlas: Callable[[int, int], None]
    ) -> None:
        """``show_atlas(layer, neuron)`` switches to the atlas view (the app's)."""
        super().__init__(state, ranking)
        self.show_atlas = show_atlas

    def on_screen_resume(self) -> None:
        if self.is_mounted:
            self.redraw()

    def action_examples(self) -> None:
        try:
            self.show_atlas(self.state.layer, self.state.neuron)
        except NeuronSignaturesError as e:
            self.notify(str(e), severity="warning", markup=False)

    def action_help(self) -> None:
        self.app.push_screen(HelpScreen(help_text(linked=True)))
