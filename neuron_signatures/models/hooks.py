"""The hook contract: ``blocks.{l}.mlp.hook_post`` captured, and checked against ``down_proj``.

Two ways to read the same activations:

1. **Bridge** (:func:`capture_hook_post_bridge`): TransformerLens hook points. Every module of the
   booted model is wrapped and attention is eager, which costs 10-25% on a CPU; attribution uses
   the bridge because it needs its backward hooks and caches.
2. **Lean** (:func:`capture_hook_post`, what ``dump`` and ``atlas`` use): a forward pre-hook on
   each wanted layer's ``mlp.down_proj`` of a *twin* of the HF model that shares every weight
   with the bridge (no extra memory) but keeps transformers' default attention and has no hook
   points. Its input is by definition the input of ``W_out``.

At the first load of a model (then its pass is cached: :mod:`.verdict`),
:func:`verify_hook_contract` checks on a short prompt that the bridge's ``hook_post`` is
``[batch, seq, d_mlp]``, equals the bridge's own ``down_proj`` input, and equals the lean
capture (to the tolerance of the two attention kernels): the lean path is only used once it has
been shown to return ``hook_post``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from typing import Any

from ..errors import HookContractError
from .specs import HOOK_POST, LoadedModel

Sink = Callable[[int, Any], None]  # (layer, [batch, seq, d_mlp] activations), see capture_hook_post


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


def _plain_down_projs(lm: LoadedModel) -> list[Any]:
    # Gemma 2/3 causal LMs keep their decoder layers at ``model.layers``.
    layers = lm.plain_model.model.layers
    return [layers[i].mlp.down_proj for i in range(lm.n_layers)]


def capture_hook_post(
    lm: LoadedModel,
    input_ids: Any,
    attention_mask: Any,
    layers: Sequence[int],
    stop_early: bool = True,
    sink: Sink | None = None,
) -> dict[int, Any]:
    """``{layer: [batch, seq, d_mlp]}`` of ``hook_post``, paying only for the hooks it uses.

    Runs the lean twin's body (no unembedding) and stops by exception after the last wanted
    layer. Falls back to the bridge when the model has no lean twin. With ``sink``, each layer's
    activations are handed to ``sink(layer, acts)`` as the forward reaches them and not kept
    (the result is then empty): the forward's memory is reused layer after layer, as in a bare
    forward, instead of holding every layer until the end.
    """
    if lm.plain_model is None:
        return capture_hook_post_bridge(lm, input_ids, attention_mask, layers, stop_early, sink)
    import torch

    got: dict[int, torch.Tensor] = {}
    seen: set[int] = set()
    last = max(layers)
    mods = _plain_down_projs(lm)
    handles = []
    for layer in layers:

        def pre(_m: Any, args: tuple, layer: int = layer) -> None:
            seen.add(layer)
            if sink is None:
                got[layer] = args[0].detach()
            else:
                sink(layer, args[0].detach())
            if stop_early and layer == last:
                raise _StopForward

        handles.append(mods[layer].register_forward_pre_hook(pre))
    try:
        with torch.inference_mode(), contextlib.suppress(_StopForward):
            lm.plain_model.model(
                input_ids=input_ids, attention_mask=attention_mask, use_cache=False
            )
    finally:
        for h in handles:
            h.remove()
    missing = sorted(set(layers) - seen)
    if missing:
        raise HookContractError(f"down_proj did not run for layers {missing} of {lm.name}")
    return got


def capture_hook_post_bridge(
    lm: LoadedModel,
    input_ids: Any,
    attention_mask: Any,
    layers: Sequence[int],
    stop_early: bool = True,
    sink: Sink | None = None,
) -> dict[int, Any]:
    """Run the body up to the last wanted layer and return ``{layer: [batch, seq, d_mlp]}``.

    Logits are never computed: the forward stops by exception in the last wanted layer's hook.
    ``sink``: as in :func:`capture_hook_post`.
    """
    import torch

    got: dict[int, torch.Tensor] = {}
    seen: set[int] = set()
    last = max(layers)

    def make_hook(layer: int) -> Any:
        def hook(t: torch.Tensor, hook: Any) -> torch.Tensor:
            seen.add(layer)
            if sink is None:
                got[layer] = t.detach()
            else:
                sink(layer, t.detach())
            if stop_early and layer == last:
                raise _StopForward
            return t

        return hook

    fwd = [(HOOK_POST.format(l=layer), make_hook(layer)) for layer in layers]
    with torch.inference_mode(), lm.bridge.hooks(fwd_hooks=fwd), contextlib.suppress(_StopForward):
        lm.bridge(input_ids, attention_mask=attention_mask, return_type=None)
    missing = sorted(set(layers) - seen)
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
        got = capture_hook_post_bridge(lm, x, mask, list(range(lm.n_layers)), stop_early=False)
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
        if ref is None or not torch.allclose(
            a.float(), ref.float(), rtol=1e-4, atol=1e-5, equal_nan=True
        ):
            raise HookContractError(
                f"{HOOK_POST.format(l=layer)} differs from the input of the down projection: "
                "refusing to dump activations that are not the neurons' outputs"
            )
    if lm.plain_model is not None:
        _check_lean(lm, x, mask, got)


def _check_lean(lm: LoadedModel, x: Any, mask: Any, bridge: dict[int, Any]) -> None:
    """The lean twin must return the bridge's ``hook_post`` (the kernels differ: eager vs the
    default attention, so compare to a tolerance scaled by the dtype and the layer's range)."""
    lean = capture_hook_post(lm, x, mask, list(range(lm.n_layers)), stop_early=False)
    rel = 1e-4 if lm.dtype == "fp32" else 5e-2
    for layer in range(lm.n_layers):
        a, b = lean[layer].float(), bridge[layer].float()
        scale = float(b.abs().max()) or 1.0
        err = float((a - b).abs().max())
        if tuple(a.shape) != tuple(b.shape) or err > rel * scale:
            raise HookContractError(
                f"the lean capture of layer {layer} differs from {HOOK_POST.format(l=layer)} "
                f"(max error {err:.3g} of {scale:.3g}): this model is not supported"
            )
