"""The atlas view's header: the neuron, the atlas and the neuron's statistics over the corpus."""

from __future__ import annotations

import math

from textual.widgets import Static

from ...atlas import NeuronAtlas
from ..atlas_state import AtlasState

N_LINES = 3


def _num(x: float, spec: str = "+.4g") -> str:
    return format(x, spec) if math.isfinite(x) else "n/a"


def atlas_header_lines(state: AtlasState, rec: NeuronAtlas | None) -> list[str]:
    """The header's lines, plain text; ``rec`` is ``None`` while the neuron is being read."""
    a = state.atlas
    corpus = a.manifest.get("corpus", {}).get("source", "?")
    lines = [
        f"L{state.layer}/N{state.neuron} | Layer {state.layer} (atlas layers "
        f"{state.layers_hint()}) | Neuron {state.neuron}/{a.d_mlp - 1}",
        f"Model: {a.model_name} | atlas {a.root} | corpus {corpus}",
    ]
    if rec is None or (rec.layer, rec.index) != state.key:
        return [*lines, "reading the neuron…"]
    s = rec.stats
    if s.count == 0:
        return [*lines, "no tokens counted for this neuron"]
    lines.append(
        f"tokens seen {s.count} | density >0 {s.frac_positive:.1%} | "
        f">{s.threshold:g} {s.frac_above_threshold:.2%} | max {_num(s.max)} | "
        f"min {_num(s.min)} | mean {_num(s.mean)} ± std {_num(s.std, '.4g')} | "
        f"skew {_num(s.skewness, '.3g')} kurt {_num(s.kurtosis, '.3g')}"
        + (f" | non-finite {s.nonfinite}" if s.nonfinite else "")
    )
    return lines


class AtlasHeader(Static):
    """The header block of the atlas view: a fixed number of lines, each cut to the width."""

    DEFAULT_CSS = (
        f"AtlasHeader {{ height: {N_LINES}; text-wrap: nowrap; text-overflow: ellipsis; }}"
    )

    def __init__(self, **kwargs: object) -> None:
        super().__init__("", markup=False, **kwargs)  # type: ignore[arg-type]

    def show(self, state: AtlasState, rec: NeuronAtlas | None) -> None:
        self.update("\n".join(atlas_header_lines(state, rec)), layout=False)
