"""One traced forward (and optional backward) of a prompt through the bridge, for attribution.

1. Forward hooks on the TransformerLens 4 bridge record, per layer, the neuron activations
   (``blocks.{l}.mlp.hook_post``), the attention and MLP outputs entering the post-norms
   (``ln1_post`` / ``ln2_post`` inputs), the residual entering layer 0 (the scaled embedding) and
   the one entering the final norm; the logit row at the target position is kept before
   (``unembed.hook_out``, pre-softcap) and after the model's final softcap.
2. With an objective, the residual entering layer 0 is made a leaf that requires grad (the
   weights are frozen, so nothing else does) and backward hooks on ``hook_post`` collect
   ∂objective/∂activation for every neuron in one pass (``retain_grad`` on converted hook
   tensors is inert in TransformerLens 4).
3. :func:`ablated_rows` runs a batch of copies of the prompt, each with some neurons set to given
   values at given positions, for the causal check.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from ..errors import HookContractError
from ..interventions.hooks import edit_hooks
from ..interventions.spec import Edit, InterventionSet
from ..models import HOOK_POST, LoadedModel

EMBED_OUT = "blocks.0.hook_in"
ATTN_OUT = "blocks.{l}.ln1_post.hook_in"
MLP_OUT = "blocks.{l}.ln2_post.hook_in"
FINAL_IN = "ln_final.hook_in"
PRE_LOGITS = "unembed.hook_out"


@dataclass
class Weights:
    """What attribution reads from the model (norm gains as ``1 + weight``, float32)."""

    w_out: list[torch.Tensor]  # per layer [d_model, d_mlp], model dtype
    g_post_attn: torch.Tensor  # [n_layers, d_model]
    g_post_mlp: torch.Tensor  # [n_layers, d_model]
    g_final: torch.Tensor  # [d_model]
    w_u: torch.Tensor  # [vocab, d_model], model dtype
    eps: float
    softcap: float | None


def _param_table(lm: LoadedModel) -> dict[str, torch.Tensor]:
    return {
        n.replace("._original_component", ""): p
        for n, p in lm.hf_model.named_parameters(remove_duplicate=False)
    }


def model_weights(lm: LoadedModel) -> Weights:
    """Down projections, post-norm and final-norm gains and the unembedding of a Gemma model."""
    params = _param_table(lm)
    per: dict[str, dict[int, torch.Tensor]] = {}
    pat = re.compile(
        r"layers\.(\d+)\.(post_attention_layernorm|post_feedforward_layernorm|mlp\.down_proj)"
        r"\.weight$"
    )
    final = [p for n, p in params.items() if n.endswith("norm.weight") and "layers." not in n]
    for name, p in params.items():
        m = pat.search(name)
        if m:
            per.setdefault(m.group(2), {})[int(m.group(1))] = p
    w_u = next((p for n, p in params.items() if n.endswith("lm_head.weight")), None)
    if w_u is None:
        w_u = next((p for n, p in params.items() if n.endswith("embed_tokens.weight")), None)
    if len(per) != 3 or len(final) != 1 or w_u is None:
        raise HookContractError(
            f"{lm.name} lacks Gemma's post-attention/post-feedforward norms, final norm or "
            "unembedding: influence supports Gemma 2 / Gemma 3 models only"
        )
    cfg = lm.hf_model.config
    cfg = cfg.get_text_config() if hasattr(cfg, "get_text_config") else cfg
    n = lm.n_layers

    def gains(key: str) -> torch.Tensor:
        return torch.stack([1.0 + per[key][i].detach().float() for i in range(n)])

    return Weights(
        w_out=[per["mlp.down_proj"][i].detach() for i in range(n)],
        g_post_attn=gains("post_attention_layernorm"),
        g_post_mlp=gains("post_feedforward_layernorm"),
        g_final=1.0 + final[0].detach().float(),
        w_u=w_u.detach(),
        eps=float(getattr(cfg, "rms_norm_eps", 1e-6)),
        softcap=getattr(cfg, "final_logit_softcapping", None),
    )


def inv_rms(x: torch.Tensor, eps: float) -> torch.Tensor:
    """Gemma RMSNorm's ``1 / rms`` over the last axis (float32), as frozen in attribution."""
    x = x.float()
    return torch.rsqrt(x.pow(2).mean(-1) + eps)


@dataclass
class Trace:
    """Everything one prompt's forward recorded (float32, batch axis removed)."""

    pos: int
    acts: torch.Tensor  # [n_layers, seq, d_mlp]
    attn_out: torch.Tensor  # [n_layers, seq, d_model]
    mlp_out: torch.Tensor  # [n_layers, seq, d_model]
    embed: torch.Tensor  # [seq, d_model]
    final_in: torch.Tensor  # [seq, d_model]
    logits: torch.Tensor  # [vocab] the model's output row at pos (after any softcap)
    pre_logits: torch.Tensor  # [vocab] the unembedding's row at pos (before the softcap)
    grads: torch.Tensor | None = None  # [n_layers, seq, d_mlp] d objective / d activation
    objective: float | None = None


def _saver(store: dict[str, torch.Tensor], key: str, pos: int | None = None) -> Callable:
    def hook(t: torch.Tensor, hook: Any) -> torch.Tensor:
        kept = t[:, pos] if pos is not None else t
        store[key] = kept.detach().float()
        return t

    return hook


def run_trace(
    lm: LoadedModel,
    token_ids: Sequence[int],
    pos: int,
    objective_fn: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> Trace:
    """Forward one prompt; with ``objective_fn(logit_row [vocab]) -> scalar`` also backward."""
    n = lm.n_layers
    got: dict[str, torch.Tensor] = {}
    grads: dict[int, torch.Tensor] = {}
    fwd: list[tuple[str, Callable]] = [
        (EMBED_OUT, _saver(got, "embed")),
        (FINAL_IN, _saver(got, "final_in")),
        (PRE_LOGITS, _saver(got, "pre", pos)),
    ]
    for layer in range(n):
        fwd += [
            (HOOK_POST.format(l=layer), _saver(got, f"act{layer}")),
            (ATTN_OUT.format(l=layer), _saver(got, f"attn{layer}")),
            (MLP_OUT.format(l=layer), _saver(got, f"mlp{layer}")),
        ]
    bwd: list[tuple[str, Callable]] = []
    if objective_fn is not None:

        def leaf(t: torch.Tensor, hook: Any) -> torch.Tensor:
            return t.detach().requires_grad_(True)

        fwd.insert(0, (EMBED_OUT, leaf))
        for layer in range(n):

            def save_grad(g: torch.Tensor, hook: Any, layer: int = layer) -> None:
                grads[layer] = g[0].detach().float()

            bwd.append((HOOK_POST.format(l=layer), save_grad))
    x = torch.tensor([list(token_ids)], device=lm.device)
    ctx = torch.enable_grad() if objective_fn is not None else torch.inference_mode()
    objective = None
    with ctx, lm.bridge.hooks(fwd_hooks=fwd, bwd_hooks=bwd):
        logits = lm.bridge(x, attention_mask=torch.ones_like(x))
        row = logits[0, pos].float()
        if objective_fn is not None:
            obj = objective_fn(row)
            obj.backward()
            objective = float(obj.detach())
    missing = [k for k in ("embed", "final_in", "pre") if k not in got]
    if missing or (objective_fn is not None and len(grads) != n):
        raise HookContractError(f"attribution hooks did not fire on {lm.name}: {missing}")
    stack = lambda k: torch.stack([got[f"{k}{i}"][0] for i in range(n)])  # noqa: E731
    return Trace(
        pos=pos,
        acts=stack("act"),
        attn_out=stack("attn"),
        mlp_out=stack("mlp"),
        embed=got["embed"][0],
        final_in=got["final_in"][0],
        logits=row.detach(),
        pre_logits=got["pre"][0],
        grads=torch.stack([grads[i] for i in range(n)]) if objective_fn is not None else None,
        objective=objective,
    )


def ablated_rows(
    lm: LoadedModel,
    token_ids: Sequence[int],
    pos: int,
    ctx: int | None,
    layers: torch.Tensor,
    neurons: torch.Tensor,
    values: torch.Tensor,
    chunk: int = 32,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Logit rows at ``pos`` (after and before the softcap) with one neuron set per copy.

    Copy ``i`` sets neuron ``neurons[i]`` of layer ``layers[i]`` to ``values[i]`` at position
    ``ctx`` (every position when ``ctx`` is None); ``layers[i] < 0`` leaves the copy clean.

    Returns:
        ``(post [B, vocab], pre [B, vocab])`` float32.
    """
    posts, pres = [], []
    for lo in range(0, len(layers), chunk):
        lay, neu, val = layers[lo : lo + chunk], neurons[lo : lo + chunk], values[lo : lo + chunk]
        x = torch.tensor([list(token_ids)] * len(lay), device=lm.device)
        got: dict[str, torch.Tensor] = {}
        sets = [
            InterventionSet((Edit(int(la), int(n), "set", float(v)),) if la >= 0 else ())
            for la, n, v in zip(lay.tolist(), neu.tolist(), val.tolist(), strict=True)
        ]
        fwd: list[tuple[str, Callable]] = [(PRE_LOGITS, _saver(got, "pre", pos))]
        fwd += edit_hooks(sets, None if ctx is None else [ctx])
        with torch.inference_mode(), lm.bridge.hooks(fwd_hooks=fwd):
            logits = lm.bridge(x, attention_mask=torch.ones_like(x))
        posts.append(logits[:, pos].float())
        pres.append(got["pre"])
    return torch.cat(posts), torch.cat(pres)
