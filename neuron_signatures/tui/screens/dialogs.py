"""Modal dialogs: "go to" inputs that validate in place, and the help screen."""

from __future__ import annotations

from collections.abc import Callable
from typing import ClassVar, Generic, TypeVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical, VerticalScroll
from textual.screen import ModalScreen, Screen
from textual.widgets import Input, Label, Static

from ...errors import NeuronSignaturesError
from ..keys import help_text
from ..widgets import OrderedInput

T = TypeVar("T")


class GoToDialog(ModalScreen[T], Generic[T]):
    """Ask for one value; a bad value shows a message under the input and the dialog stays.

    ``parse`` turns the typed text into the value or raises a :class:`NeuronSignaturesError`
    whose message is shown. Enter accepts, Escape cancels (the result is then ``None``). The input
    is an :class:`OrderedInput`, so keys typed fast after an error still apply in order.
    """

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "cancel", "cancel")]

    def __init__(self, title: str, hint: str, parse: Callable[[str], T], value: str = "") -> None:
        super().__init__()
        self._title, self._hint, self._parse, self._value = title, hint, parse, value

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Label(self._title, classes="dialog-title", markup=False)
            yield Label(self._hint, classes="dialog-hint", markup=False)
            yield OrderedInput(value=self._value, select_on_focus=True, id="dialog-input")
            yield Label("", id="dialog-error", markup=False)

    @property
    def error(self) -> str:
        """The message shown under the input ("" when the input is fine)."""
        return str(self.query_one("#dialog-error", Label).content)

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        message = self.query_one("#dialog-error", Label)
        try:
            value = self._parse(event.value)
        except NeuronSignaturesError as e:
            message.update(str(e))
            message.add_class("shown")
            return
        self.dismiss(value)

    def on_input_changed(self, event: Input.Changed) -> None:
        message = self.query_one("#dialog-error", Label)
        if message.has_class("shown"):  # the message goes once the input changes
            message.update("")
            message.remove_class("shown")

    def action_cancel(self) -> None:
        self.dismiss(None)


class HelpScreen(ModalScreen[None]):
    """Every key, one per line (the run browser's unless ``text`` is given); Escape, q or ?
    closes it."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape,q,question_mark", "close", "close")]

    def __init__(self, text: str | None = None) -> None:
        super().__init__()
        self._text = help_text() if text is None else text

    def compose(self) -> ComposeResult:
        with VerticalScroll(classes="dialog help"):
            yield Static(self._text, id="help-text", markup=False)
            yield Label("Esc, q or ? closes this help; ↑ / ↓ scroll it.", classes="dialog-hint")

    def action_close(self) -> None:
        self.dismiss(None)


def ask(
    screen: Screen[None],
    title: str,
    hint: str,
    parse: Callable[[str], T],
    apply: Callable[[T], None],
    then: Callable[[], None],
) -> None:
    """Open a :class:`GoToDialog`; on a valid answer ``apply`` it, then ``then()`` (redraw)."""

    def done(value: T | None) -> None:
        if value is not None:
            apply(value)
            then()

    screen.app.push_screen(GoToDialog(title, hint, parse), done)
