"""The edit hooks: one forward hook per touched layer's ``blocks.{l}.mlp.hook_post``.

1. Batch row ``i`` carries intervention set ``i`` (row 0 is usually the clean "before" copy with
   no edit); the rows of one layer's edits are gathered into that layer's hook.
2. The hook clones the activation ``[batch, seq, d_mlp]`` (index assignment on the clone, never on
   a temporary view), then applies each edit of the layer in the order given: ``set`` writes the
   value, ``scale`` multiplies, ``add`` adds, at the chosen positions of that row only.
3. :func:`edited_logits` runs the bridge with those hooks and returns the output logits of the
   last position (after any final softcap), which both the comparison and generation read.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch

from ..models import HOOK_POST, LoadedModel
from .spec import Edit, InterventionSet


def apply_edit(t: torch.Tensor, row: int, positions: list[int] | None, e: Edit) -> None:
    """Edit ``t[row, positions, e.neuron]`` in place (every position when ``positions`` is None).

    Explicit positions are prompt positions, so they exist at every generation step too.
    """
    idx: Any = slice(None) if positions is None else torch.tensor(positions, device=t.device)
    v = torch.tensor(e.value, dtype=t.dtype, device=t.device)
    if e.op == "set":
        t[row, idx, e.neuron] = v
    elif e.op == "scale":
        t[row, idx, e.neuron] = t[row, idx, e.neuron] * v
    else:
        t[row, idx, e.neuron] = t[row, idx, e.neuron] + v


def _editor(items: list[tuple[int, Edit]], positions: list[int] | None) -> Callable:
    def hook(t: torch.Tensor, hook: Any) -> torch.Tensor:
        t = t.clone()
        for row, e in items:
            apply_edit(t, row, positions, e)
        return t

    return hook


def edit_hooks(
    sets: Sequence[InterventionSet], positions: list[int] | None
) -> list[tuple[str, Callable]]:
    """Forward hooks editing batch row ``i`` with ``sets[i]`` (rows with no edit stay clean)."""
    by_layer: dict[int, list[tuple[int, Edit]]] = {}
    for row, s in enumerate(sets):
        for e in s.edits:
            by_layer.setdefault(e.layer, []).append((row, e))
    return [(HOOK_POST.format(l=layer), _editor(by_layer[layer], positions)) for layer in by_layer]


def edited_logits(
    lm: LoadedModel, ids: torch.Tensor, hooks: list[tuple[str, Callable]]
) -> torch.Tensor:
    """``[batch, vocab]`` float32 output logits at the last position of ``ids [batch, seq]``."""
    with torch.inference_mode(), lm.bridge.hooks(fwd_hooks=hooks):
        logits = lm.bridge(ids, attention_mask=torch.ones_like(ids))
    return logits[:, -1].float()
