"""Neuron ids: the one domain object for "layer L, neuron N", and the one parser of typed ids.

Researchers type a neuron as ``L17/N1152`` (Neuronpedia's style), ``17:1152`` (the prototype's),
or ``17/1152``; every entry point (CLI flags, the TUI go-to dialog, the web app's text box and
URL) parses through :func:`parse_neuron` so they all accept the same forms and fail the same way.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

from .errors import BadArgumentError

_FORMS = "L17/N1152, 17:1152 or 17/1152"
_RX = re.compile(r"^\s*(?:[Ll](?:ayer)?\s*)?(\d+)\s*(?:[:/,]|\s)\s*(?:[Nn](?:euron)?\s*)?(\d+)\s*$")


@dataclass(frozen=True, order=True)
class NeuronId:
    """One MLP neuron: ``layer`` (block index) and ``index`` (position in ``hook_post``)."""

    layer: int
    index: int

    def __iter__(self) -> Iterator[int]:  # ``layer, n = nid``
        return iter((self.layer, self.index))

    def __str__(self) -> str:
        return f"L{self.layer}/N{self.index}"


def parse_neuron(
    text: str, n_layers: int | None = None, d_mlp: int | None = None, what: str = "neuron"
) -> NeuronId:
    """Parse one typed neuron id; check it against the model shape when given.

    Raises:
        BadArgumentError: the text is not a neuron id, or the layer/neuron is out of range.
    """
    m = _RX.match(text or "")
    if not m:
        raise BadArgumentError(f"{what} {text!r} is not a neuron id: type it as {_FORMS}")
    nid = NeuronId(int(m.group(1)), int(m.group(2)))
    if n_layers is not None and not 0 <= nid.layer < n_layers:
        raise BadArgumentError(
            f"{what} {text!r}: layer {nid.layer} is out of range (the model has layers "
            f"0-{n_layers - 1})"
        )
    if d_mlp is not None and not 0 <= nid.index < d_mlp:
        raise BadArgumentError(
            f"{what} {text!r}: neuron {nid.index} is out of range (each layer has neurons "
            f"0-{d_mlp - 1})"
        )
    return nid


def parse_neuron_list(
    text: str, n_layers: int | None = None, d_mlp: int | None = None, what: str = "--neuron_ids"
) -> list[NeuronId]:
    """Parse a comma- or whitespace-separated list such as ``L3/N12, 5:40``."""
    parts = [p for p in re.split(r"[,;\s]+", text or "") if p]
    if not parts:
        raise BadArgumentError(f"{what} is empty: list neurons like {_FORMS}")
    return [parse_neuron(p, n_layers, d_mlp, what) for p in parts]


def parse_layers(text: str | None) -> list[int] | None:
    """``"0,3,5-7"`` → ``[0, 3, 5, 6, 7]``; ``None`` or ``"all"`` → ``None`` (all layers)."""
    if text is None or text.strip().lower() == "all":
        return None
    out: list[int] = []
    try:
        for part in text.split(","):
            part = part.strip()
            if "-" in part[1:]:
                lo, hi = (int(x) for x in part.split("-", 1))
                if lo > hi:
                    raise BadArgumentError(
                        f"--layers range {part} is reversed: write the low layer first ({hi}-{lo})"
                    )
                out.extend(range(lo, hi + 1))
            elif part:
                out.append(int(part))
    except ValueError:
        raise BadArgumentError(f"--layers {text!r} is not a list like 0,3,5-7") from None
    return out
