"""The atlas view's explanation block: per side the explanation, its explainer and its scores
with floors and held-out sizes (hidden where the atlas has no explanations)."""

from __future__ import annotations

from pathlib import Path

from textual.widgets import Static

from ...errors import NeuronSignaturesError
from ...explain import records

MAX_LINES = 8  # two folders x two sides x (explanation, scores)


def explanation_lines(atlas_root: str | Path, layer: int, neuron: int) -> list[str] | None:
    """The block's lines, plain text; ``None`` when the atlas has no explanations."""
    try:
        found = records.neuron_explanations(atlas_root, layer, neuron)
    except NeuronSignaturesError as e:
        return [f"explanations: {e}"]
    if not found:
        return None
    lines = []
    for folder, expl in found.items():
        if expl is None:
            lines.append(f"{folder}: none for this neuron (no side, or layer not explained)")
            continue
        if expl.error:
            lines.append(f"{folder}: error {expl.error} (rerun explain with --resume)")
        for side in expl.sides:
            lines.append(f"{side['side']} ({side['explainer']}): {side['explanation']}")
            lines.append("  " + " | ".join(records.score_lines(side)))
    return lines


class ExplanationPanel(Static):
    """Up to :data:`MAX_LINES` lines, each cut to the width; not displayed without
    explanations."""

    DEFAULT_CSS = (
        "ExplanationPanel { height: auto; max-height: "
        f"{MAX_LINES}; padding: 0 1; text-wrap: nowrap; text-overflow: ellipsis; }}"
    )

    def __init__(self, **kwargs: object) -> None:
        super().__init__("", markup=False, **kwargs)  # type: ignore[arg-type]
        self.display = False

    def show(self, atlas_root: str | Path, layer: int, neuron: int) -> None:
        lines = explanation_lines(atlas_root, layer, neuron)
        self.display = lines is not None
        self.update("\n".join(lines or []))
