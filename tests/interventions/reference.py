"""The independent reference of the intervention tests: the plain transformers model with each
edit applied to the input of ``model.layers[l].mlp.down_proj`` by a forward pre-hook."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

PROMPT = "The capital of the state containing Dallas is"

Ref = tuple[int, int, str, float]  # (layer, neuron, op, value)


def _pre_hook(edits: list[Ref], where: list[int] | None) -> Any:
    def pre(_m: Any, args: tuple) -> tuple:
        x = args[0].clone()
        mask = torch.zeros(x.shape[1], dtype=torch.bool)
        mask[slice(None) if where is None else where] = True
        for _layer, n, op, v in edits:
            col = x[0, :, n]
            new = {"set": torch.full_like(col, v), "scale": col * v, "add": col + v}[op]
            x[0, :, n] = torch.where(mask, new, col)
        return (x,)

    return pre


def plain_logits(
    ref: Any, ids: Sequence[int], edits: list[Ref], where: list[int] | None
) -> torch.Tensor:
    """``[seq, vocab]`` logits of the plain model with ``edits`` at prompt positions ``where``
    (every position when None), in the order given."""
    handles = []
    for layer in sorted({e[0] for e in edits}):
        mine = [e for e in edits if e[0] == layer]
        mod = ref.model.layers[layer].mlp.down_proj
        handles.append(mod.register_forward_pre_hook(_pre_hook(mine, where)))
    try:
        with torch.no_grad():
            return ref(torch.tensor([list(ids)])).logits[0].float()
    finally:
        for h in handles:
            h.remove()


def prompt_ids(tokenizer: Any, text: str = PROMPT) -> list[int]:
    return [tokenizer.bos_token_id, *tokenizer(text, add_special_tokens=False).input_ids]
