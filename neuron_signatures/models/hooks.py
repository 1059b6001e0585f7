"""The hook contract: ``blocks.{l}.mlp.hook_post`` captured, and checked against ``down_proj``."""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from typing import Any

from ..errors import HookContractError
from .specs import HOOK_POST, LoadedModel


class _StopForward(Exception):
    """Raised from the last needed hook: skips the remaining layers and the unembed."""


def _down_proj_modules(lm: LoadedModel) -> list[Any]:
    # Boot nests the original modules under ``_original_component``: match on the HF path.
    mods = {
        n.replace("._original_component", ""): m
        for n, m in lm.hf_model.named_modules(remove_duplicate=False)
    }
    out = []
    for layer in range(lm.n_layers):
        suffix = f".layers.{layer}.mlp.down_proj"
        # The innermost nn.Linear is the module that really multiplies by W_out.
        hits = [m for n, m in mods.items() if n.endswith(suffix) and type(m).__name__ == "Linear"]
        if len(hits) != 1:
            raise HookContractError(
                f"cannot find layer {layer}'s mlp.down_proj in {lm.name}: only Gemma-style gated "
                "MLPs are supported"
            )
        out.append(hits[0])
    return out


def capture_hook_post(
    lm: LoadedModel,
    input_ids: Any,
    attention_mask: Any,
    layers: Sequence[int],
    stop_early: bool = True,
) -> dict[int, Any]:
    """Run the body up to the last wanted layer and return ``{layer: [batch, seq, d_mlp]}``.

    Logits are never computed: the forward stops by exception in the last wanted layer's hook.
    """
    import torch

    got: dict[int, torch.Tensor] = {}
    last = max(layers)

    def make_hook(layer: int) -> Any:
        def hook(t: torch.Tensor, hook: Any) -> torch.Tensor:
            got[layer] = t.detach()
            if stop_early and layer == last:
                raise _StopForward
            return t

        return hook

    fwd = [(HOOK_POST.format(l=layer), make_hook(layer)) for layer in layers]
    with torch.inference_mode(), lm.bridge.hooks(fwd_hooks=fwd), contextlib.suppress(_StopForward):
        lm.bridge(input_ids, attention_mask=attention_mask, return_type=None)
    missing = sorted(set(layers) - set(got))
    if missing:
        raise HookContractError(f"hook_post did not fire for layers {missing} of {lm.name}")
    return got


def verify_hook_contract(lm: LoadedModel) -> None:
    """Check once that ``hook_post`` is ``[batch, seq, d_mlp]`` and equals the down-proj input."""
    import torch

    ids = [i for i in lm.tokenizer("The capital of Texas is", add_special_tokens=False).input_ids]
    bos = lm.tokenizer.bos_token_id
    ids = ([bos] if bos is not None else []) + ids[:6]
    x = torch.tensor([ids], device=lm.device)
    mask = torch.ones_like(x)
    seen: dict[int, torch.Tensor] = {}
    handles = []
    for layer, mod in enumerate(_down_proj_modules(lm)):

        def pre(_m: Any, args: tuple, layer: int = layer) -> None:
            seen[layer] = args[0].detach().clone()

        handles.append(mod.register_forward_pre_hook(pre))
    try:
        got = capture_hook_post(lm, x, mask, list(range(lm.n_layers)), stop_early=False)
    finally:
        for h in handles:
            h.remove()
    for layer in range(lm.n_layers):
        a = got[layer]
        if tuple(a.shape) != (1, len(ids), lm.d_mlp):
            raise HookContractError(
                f"{HOOK_POST.format(l=layer)} has shape {tuple(a.shape)}, expected "
                f"[1, {len(ids)}, {lm.d_mlp}]: this model is not supported"
            )
        ref = seen.get(layer)
        if ref is None or not torch.allclose(a.float(), ref.float(), rtol=1e-4, atol=1e-5):
            raise HookContractError(
                f"{HOOK_POST.format(l=layer)} differs from the input of the down projection: "
                "refusing to dump activations that are not the neurons' outputs"
            )
