"""The ranked-neurons side panel: one ranking file as a list and the current neuron's signature."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import OptionList, Static
from textual.widgets.option_list import Option

from ...analysis.results import RankedNeuron
from ..cells import fit, visible
from ..ranking import RankingCursor

MAX_ROWS = 2000  # rows listed; `}` / `{` still step through the whole ranking
LABEL_CELLS = 16
COLUMNS = f"{'rank':>4} {'layer':>5} {'neuron':>6} {'score':>9}  peak token"


def row_label(r: RankedNeuron) -> str:
    """One panel row: rank, layer, neuron, score and the row's label (peak token or signature)."""
    label = fit(visible(r.label), LABEL_CELLS)
    return f"{r.rank:>4} {r.layer:>5} {r.neuron:>6} {r.score:>+9.4g}  {label}"


class RankedPanel(Vertical):
    """Title, column names, the ranked rows (focus with ``t``) and the signature line."""

    def compose(self) -> ComposeResult:
        yield Static("", id="ranked-title", markup=False)
        yield Static(COLUMNS, id="ranked-columns", markup=False)
        yield OptionList(id="ranked-list", markup=False)
        yield Static("", id="ranked-signature", markup=False)

    @property
    def options(self) -> OptionList:
        return self.query_one("#ranked-list", OptionList)

    def load(self, cursor: RankingCursor) -> None:
        """List the cursor's current ranking (the first :data:`MAX_ROWS` rows)."""
        ranking = cursor.ranking
        title = self.query_one("#ranked-title", Static)
        rows = cursor.rows
        if ranking is None:
            title.update("no rankings")
            self.options.clear_options()
            return
        more = f" (first {MAX_ROWS} of {len(rows)})" if len(rows) > MAX_ROWS else ""
        n = len(cursor.rankings)
        title.update(f"{ranking.title} [{cursor.which + 1}/{n}, r: next]{more}")
        self.options.set_options(
            Option(Text(row_label(r), no_wrap=True), id=str(i))
            for i, r in enumerate(rows[:MAX_ROWS])
        )
        self.highlight(cursor.row)

    def highlight(self, row: int) -> None:
        """Highlight ``row`` when it is listed (``-1``: nothing)."""
        self.options.highlighted = row if 0 <= row < self.options.option_count else None

    def show_signature(self, cursor: RankingCursor, layer: int, neuron: int) -> None:
        """The current neuron's signature: which file, class and name, and the Say X check.

        Hidden when the run has no signatures file.
        """
        line = self.query_one("#ranked-signature", Static)
        line.display = bool(cursor.signature_files or cursor.signatures)
        if line.display:
            line.update("\n".join(signature_lines(cursor, layer, neuron)), layout=False)


def signature_lines(cursor: RankingCursor, layer: int, neuron: int) -> list[str]:
    """The signature block: ``signature L2 N17 · <file>``, ``class: name``, the Say X check, the
    corpus check of the name."""
    source = cursor.signature_file(layer, neuron)
    switch = " (s: switch)" if len(cursor.signature_files) > 1 else ""
    lines = [f"signature L{layer} N{neuron} · {source or cursor.signatures_source}{switch}"]
    sig = cursor.signature(layer, neuron)
    lines.append(visible(sig) if sig else "no signature")
    check = cursor.say_x(layer, neuron)
    if check is not None:
        lines.append(check.describe(visible))
    corpus = cursor.corpus(layer, neuron)
    if corpus is not None:
        lines.append(visible(corpus.describe()))
    return lines
