"""Pick a prompt: a list of every prompt, filtered as you type by id or text (``/`` and ``p``)."""

from __future__ import annotations

from typing import ClassVar

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Input, Label, OptionList
from textual.widgets.option_list import Option

from ...store import PromptRecord
from ..cells import fit, pad, visible
from ..widgets import OrderedInput

MAX_LISTED = 500


def match_prompts(haystacks: list[str], query: str) -> list[int]:
    """Indices of prompts whose ``"id text"`` (lower-cased) holds every word of ``query``."""
    words = query.lower().split()
    return [i for i, h in enumerate(haystacks) if all(w in h for w in words)]


class PromptPicker(ModalScreen[int]):
    """Type to filter by id or text; Enter or a click picks, Escape cancels (result ``None``).

    From the input, Enter takes the highlighted match (the first one unless the list was used)
    and ↓ moves into the list.
    """

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "cancel", "cancel"),
        Binding("down", "focus_list", "list", show=False),  # reached only from the input
    ]

    def __init__(self, prompts: list[PromptRecord], current: int, focus_search: bool) -> None:
        super().__init__()
        self._prompts = prompts
        self._current = current
        self._focus_search = focus_search
        self._haystacks = [f"{p.probe_id} {p.text}".lower() for p in prompts]
        self.matches: list[int] = list(range(len(prompts)))

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog picker"):
            title = "Search prompts (id or text)" if self._focus_search else "Pick a prompt"
            yield Label(title, classes="dialog-title")
            yield OrderedInput(placeholder="words to find in the id or text", id="picker-input")
            yield Label("", id="picker-status", markup=False)
            yield OptionList(id="picker-list", markup=False)

    def on_mount(self) -> None:
        self._fill("")
        options = self.query_one(OptionList)
        if self._focus_search:
            self.query_one(Input).focus()
        else:
            options.highlighted = min(self._current, options.option_count - 1)
            options.focus()

    def _fill(self, query: str) -> None:
        self.matches = match_prompts(self._haystacks, query)
        shown = self.matches[:MAX_LISTED]
        options = self.query_one(OptionList)
        options.set_options(Option(self._label(i), id=str(i)) for i in shown)
        if shown:
            options.highlighted = 0
        status = f"{len(self.matches)} of {len(self._prompts)} prompts"
        if len(self.matches) > MAX_LISTED:
            status += f" (first {MAX_LISTED} listed: type more to narrow)"
        if not self.matches:
            status = f"no prompt matches {query!r}: change the words or press Escape"
        self.query_one("#picker-status", Label).update(status)

    def _label(self, i: int) -> Text:
        p = self._prompts[i]
        line = f"{i:>5}  {pad(visible(p.probe_id), 24)}  {visible(p.text[:400])}"
        return Text(fit(line, 200), no_wrap=True)

    def on_input_changed(self, event: Input.Changed) -> None:
        self._fill(event.value)

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        chosen = self.query_one(OptionList).highlighted_option
        if chosen is not None and chosen.id is not None:
            self.dismiss(int(chosen.id))

    def action_focus_list(self) -> None:
        self.query_one(OptionList).focus()

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        event.stop()
        if event.option.id is not None:
            self.dismiss(int(event.option.id))

    def action_cancel(self) -> None:
        self.dismiss(None)
