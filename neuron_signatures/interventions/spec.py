"""What an intervention does: edits of single neurons, grouped in sets, at chosen positions.

1. An :class:`Edit` names one neuron (``L17/N345`` or ``17:345``, parsed by
   :func:`~neuron_signatures.neurons.parse_neuron`), an operation and a value: ``set`` writes the
   value, ``scale`` multiplies by it, ``add`` adds it, all on ``blocks.{l}.mlp.hook_post``.
2. An :class:`InterventionSet` is the edits applied together in one forward (one batch row).
   Edits of one set apply in the order given, so ``scale`` then ``add`` on one neuron composes.
3. :class:`Positions` says where in the sequence: ``last`` (the prompt's last token), ``all`` (every
   position, generated ones included), or prompt positions such as ``3,5`` (negative counts from
   the end). It is resolved against the prompt's length by :meth:`Positions.resolve`.

Everything here parses and validates text; nothing imports torch.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from ..errors import BadArgumentError
from ..neurons import NeuronId, parse_neuron

OPS = ("set", "scale", "add")
_SYMBOL = {"set": "=", "scale": "×", "add": "+="}
_FORMS = "L17/N345=0 (or 17:345=0)"


@dataclass(frozen=True)
class Edit:
    """One neuron's edit: ``hook_post[..., neuron]`` of ``layer`` is set / scaled / shifted."""

    layer: int
    neuron: int
    op: str  # one of OPS
    value: float

    def __str__(self) -> str:
        return f"L{self.layer}/N{self.neuron}{_SYMBOL[self.op]}{self.value:g}"


@dataclass(frozen=True)
class InterventionSet:
    """Edits applied together (one batch row); ``label`` names the set in reports."""

    edits: tuple[Edit, ...]
    label: str = "after"

    @property
    def layers(self) -> list[int]:
        return sorted({e.layer for e in self.edits})

    def describe(self) -> str:
        return ", ".join(str(e) for e in self.edits) or "(no edit)"


@dataclass(frozen=True)
class Positions:
    """``last``, ``all`` or explicit prompt positions (``indices``, possibly negative)."""

    kind: str  # "last" | "all" | "list"
    indices: tuple[int, ...] = ()

    def resolve(self, prompt_len: int) -> list[int] | None:
        """Absolute prompt positions, or None for every position (generated ones too)."""
        if self.kind == "all":
            return None
        if self.kind == "last":
            return [prompt_len - 1]
        bad = [i for i in self.indices if not -prompt_len <= i < prompt_len]
        if bad:
            raise BadArgumentError(
                f"--positions {bad[0]} is outside the prompt ({prompt_len} tokens, BOS included): "
                f"use positions {-prompt_len}..{prompt_len - 1}, 'last' or 'all'"
            )
        return sorted({i % prompt_len for i in self.indices})

    def __str__(self) -> str:
        return self.kind if self.kind != "list" else ",".join(str(i) for i in self.indices)


def parse_value(text: str, what: str) -> float:
    """A finite number such as ``0``, ``3``, ``+2.5`` or ``-1e-2``."""
    try:
        value = float(text.strip())
    except ValueError:
        raise BadArgumentError(f"{what}: value {text.strip()!r} is not a number") from None
    if not math.isfinite(value):
        raise BadArgumentError(f"{what}: value {text.strip()!r} must be a finite number")
    return value


def parse_edit(text: str, op: str, what: str | None = None) -> Edit:
    """``L17/N345=0`` with an operation (``set``/``scale``/``add``) → :class:`Edit`."""
    what = what or f"--{op} {text!r}"
    if op not in OPS:
        raise BadArgumentError(f"{what}: unknown operation {op!r}: use one of {', '.join(OPS)}")
    neuron, sep, value = (text or "").rpartition("=")
    if not sep or not neuron.strip():
        raise BadArgumentError(f"{what} is not NEURON=VALUE: type it as {_FORMS}")
    nid = parse_neuron(neuron, what=what)
    return Edit(nid.layer, nid.index, op, parse_value(value, what))


def parse_set(text: str, label: str) -> InterventionSet:
    """One set typed as ``"L3/N4=0; scale L5/N6=2; add 7:1=-1.5"`` (operation ``set`` if none)."""
    parts = [p.strip() for p in (text or "").split(";") if p.strip()]
    if not parts:
        raise BadArgumentError(
            f"--also {text!r} is empty: list edits like 'L3/N4=0; scale L5/N6=2; add L7/N1=1.5'"
        )
    edits = []
    for part in parts:
        m = re.match(r"^(set|scale|add)\s+(.*)$", part, re.IGNORECASE)
        op, body = (m.group(1).lower(), m.group(2)) if m else ("set", part)
        edits.append(parse_edit(body, op, what=f"--also {part!r}"))
    return InterventionSet(tuple(edits), label)


def parse_positions(text: str | None) -> Positions:
    """``last`` (default), ``all`` or a comma-separated list of positions such as ``3,5,-1``."""
    t = (text or "last").strip().lower()
    if t in ("last", "all"):
        return Positions(t)
    try:
        indices = tuple(int(p) for p in t.split(",") if p.strip())
    except ValueError:
        indices = ()
    if not indices:
        raise BadArgumentError(
            f"--positions {text!r} is not 'last', 'all' or a list of positions such as 3,5"
        )
    return Positions("list", indices)


def check_prompt(text: str | None) -> None:
    """A prompt must have some text (BOS alone predicts nothing about it)."""
    if not (text or "").strip():
        raise BadArgumentError(
            "the prompt (--prompt) is empty: give a prompt text, e.g. 'The capital of'"
        )


def check_sets(sets: list[InterventionSet], n_layers: int, d_mlp: int) -> None:
    """Every edited neuron must exist in the model (the errors name the valid ranges)."""
    for s in sets:
        for e in s.edits:
            parse_neuron(str(NeuronId(e.layer, e.neuron)), n_layers, d_mlp, what=f"edit {e}")
