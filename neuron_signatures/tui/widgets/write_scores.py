"""The write scores of the neuron on screen: the tokens its output promotes and suppresses."""

from __future__ import annotations

from textual.widgets import Static

from ...atlas import NeuronAtlas, WriteScore
from ..cells import quoted


def write_score_lines(rec: NeuronAtlas | None) -> list[str]:
    """Two lines, ``promotes: 'tok' +1.2 ...`` and ``suppresses: ...`` (cut to the width later)."""
    if rec is None:
        return ["", ""]
    if not rec.write_top and not rec.write_bottom:
        return ["write scores: none in this atlas (built with --write_scores_k 0)", ""]
    return [_line("promotes:  ", rec.write_top), _line("suppresses:", rec.write_bottom)]


def _line(title: str, scores: list[WriteScore]) -> str:
    return title + "".join(f"  {quoted(w.token, 24)} {w.score:+.3g}" for w in scores)


class WriteScores(Static):
    """Two lines under the examples, each cut to the width."""

    DEFAULT_CSS = "WriteScores { height: 2; text-wrap: nowrap; text-overflow: ellipsis; }"

    def __init__(self, **kwargs: object) -> None:
        super().__init__("", markup=False, **kwargs)  # type: ignore[arg-type]

    def show(self, rec: NeuronAtlas | None) -> None:
        self.update("\n".join(write_score_lines(rec)), layout=False)
