"""Find neurons by explanation (``f`` in the atlas view): words and an optional minimum score in,
the atlas's matching neurons out (:func:`neuron_signatures.index.search_neurons`); Enter on one
opens its page.

The search runs in a worker thread (the first one builds the atlas's neuron index, seconds on a
large atlas); only the latest search's rows are shown. A bad minimum score, a query without
words, no match or an atlas without explanations is one line in the dialog.
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Input, Label, OptionList
from textual.widgets.option_list import Option
from textual.worker import Worker, WorkerState

from ...errors import BadArgumentError, NeuronSignaturesError
from ...index import IndexQuery, IndexResult, NeuronRow, fts_query, search_neurons
from ...neurons import NeuronId
from ..cells import fit, visible
from ..widgets import OrderedInput

MAX_ROWS = 200


def parse_min_score(text: str) -> float | None:
    """The minimum score typed (``None`` when empty); :class:`BadArgumentError` otherwise."""
    text = text.strip()
    if not text:
        return None
    try:
        value = float(text)
    except ValueError:
        raise BadArgumentError(
            f"min score {text!r} is not a number: type one like 0.4, or leave it empty"
        ) from None
    if not -1.0 <= value <= 1.0:
        raise BadArgumentError(f"min score {value:g} is out of range: use -1..1 (e.g. 0.4)")
    return value


def row_label(r: NeuronRow) -> Text:
    """One result line: id, side, score, explainer, explanation."""
    score = "   -  " if r.score is None else f"{r.score:+.3f}"
    side = {"positive": "+", "negative": "-"}.get(r.side or "", " ")
    line = f"{r.id:<12} {side} {score}  {r.source:<14} {visible(r.explanation or '-')}"
    return Text(fit(line, 300), no_wrap=True)


class ExplainFilterDialog(ModalScreen[NeuronId]):
    """Words (+ optional min score), Enter searches; ↓ or Tab moves to the rows, Enter opens
    one; Escape closes (result ``None``)."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "cancel", "cancel"),
        Binding("down", "focus_list", "rows", show=False),  # reached only from the inputs
    ]
    DEFAULT_CSS = """
    #filter-inputs { height: auto; }
    #filter-query { width: 1fr; }
    #filter-min { width: 16; }
    #filter-message { color: $text-muted; width: 100%; }
    #filter-rows { height: 1fr; }
    """

    def __init__(self, atlas_root: str | Path) -> None:
        super().__init__()
        self.atlas_root = Path(atlas_root)
        self.rows: list[NeuronRow] = []

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog picker"):
            yield Label("Find neurons by explanation", classes="dialog-title")
            yield Label(
                "words the explanation holds (any order), optional min score; Enter searches, "
                "↓ then Enter opens a neuron, Esc closes",
                classes="dialog-hint",
            )
            with Horizontal(id="filter-inputs"):
                yield OrderedInput(placeholder="e.g. capital city", id="filter-query")
                yield OrderedInput(placeholder="min score", id="filter-min")
            yield Label("", id="filter-message", markup=False)
            yield OptionList(id="filter-rows", markup=False)

    def on_mount(self) -> None:
        self.query_one("#filter-query", Input).focus()

    @property
    def message(self) -> str:
        """The dialog's one-line status ("" before the first search)."""
        return str(self.query_one("#filter-message", Label).content)

    def say(self, text: str) -> None:
        self.query_one("#filter-message", Label).update(text)

    def _show(self, rows: list[NeuronRow]) -> None:
        self.rows = rows
        options = self.query_one(OptionList)
        options.set_options(Option(row_label(r), id=str(i)) for i, r in enumerate(rows))
        if rows:
            options.highlighted = 0

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        text = self.query_one("#filter-query", Input).value
        try:
            min_score = parse_min_score(self.query_one("#filter-min", Input).value)
        except BadArgumentError as e:
            self.say(str(e))
            return
        if fts_query(text) is None:
            self._show([])
            self.say("type a word of an explanation (letters or digits), e.g. capital")
            return
        q = IndexQuery(text=text, min_score=min_score, sort="score", limit=MAX_ROWS)
        self.say("searching…")
        self.run_worker(
            lambda: search_neurons(self.atlas_root, q),
            name="explain-filter",
            group="explain-filter",
            exclusive=True,
            thread=True,
            exit_on_error=False,
        )

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        worker = event.worker
        if worker.group != "explain-filter":
            return
        if event.state == WorkerState.SUCCESS and isinstance(worker.result, IndexResult):
            res = worker.result
            self._show(res.rows)
            if not res.rows:
                self.say(f"no neuron's explanation holds {res.query.text!r}: try other words")
            else:
                full = len(res.rows) == MAX_ROWS
                more = " (the first ones: add words or a min score)" if full else ""
                self.say(f"{len(res.rows)} rows, best score first{more}; ↓ then Enter opens one")
        elif event.state == WorkerState.ERROR:
            self._show([])
            err = worker.error
            text = str(err) if isinstance(err, NeuronSignaturesError) else f"search failed: {err}"
            self.say(text.splitlines()[0] if text else "search failed")

    def action_focus_list(self) -> None:
        if self.rows:
            self.query_one(OptionList).focus()

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        event.stop()
        if event.option.id is not None:
            r = self.rows[int(event.option.id)]
            self.dismiss(NeuronId(r.layer, r.neuron))

    def action_cancel(self) -> None:
        self.dismiss(None)
