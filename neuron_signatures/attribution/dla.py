"""Direct logit attribution (DLA) of MLP neurons onto the pre-softcap target logit.

Exact mode, for neuron ``n`` of layer ``l`` at the target position ``p``:

1. the neuron writes ``a[l, p, n] · W_out[l][:, n]`` into the MLP output;
2. Gemma's post-feedforward RMSNorm multiplies it by ``(1 + g_post[l]) / rms_l(p)``, with
   ``1 / rms`` frozen from the actual forward, so the map is linear;
3. it is added to the residual stream, and the final RMSNorm multiplies the residual by
   ``(1 + g_final) / rms_final(p)`` (frozen likewise);
4. the dot product with ``W_U[target]`` gives its share of the pre-softcap logit.

With the scales frozen, the embedding, every attention block and every MLP block decompose the
pre-softcap logit exactly (:func:`component_effects`; the closure test checks the sum). Approx
mode is the prototype's ``a · ⟨W_out[:, n], W_U[target]⟩`` (no norms). ``logit_diff`` replaces
``W_U[target]`` by ``W_U[target] − W_U[baseline]``.
"""

from __future__ import annotations

import torch

from .trace import Trace, Weights, inv_rms


def readout(w: Weights, target_id: int, baseline_id: int | None = None) -> torch.Tensor:
    """``W_U[target] (− W_U[baseline])`` as float32 ``[d_model]``."""
    v = w.w_u[target_id].float()
    if baseline_id is not None:
        v = v - w.w_u[baseline_id].float()
    return v


def dla_coefficients(
    trace: Trace, w: Weights, target_id: int, baseline_id: int | None = None, exact: bool = True
) -> torch.Tensor:
    """Per-unit direct effect of each neuron at ``trace.pos``: ``[n_layers, d_mlp]``.

    The DLA of a neuron is its activation times this coefficient.
    """
    v = readout(w, target_id, baseline_id)
    p = trace.pos
    if exact:
        v = v * w.g_final * inv_rms(trace.final_in[p], w.eps)
        scale = w.g_post_mlp * inv_rms(trace.mlp_out[:, p], w.eps)[:, None]  # [L, d_model]
    else:
        scale = torch.ones_like(w.g_post_mlp)
    u = scale * v  # [L, d_model]
    return torch.stack([u[i] @ wo.float() for i, wo in enumerate(w.w_out)])


def dla(
    trace: Trace, w: Weights, target_id: int, baseline_id: int | None = None, exact: bool = True
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(influence [n_layers, d_mlp], coefficient [n_layers, d_mlp])`` at the target position."""
    coef = dla_coefficients(trace, w, target_id, baseline_id, exact)
    return trace.acts[:, trace.pos] * coef, coef


def component_effects(
    trace: Trace, w: Weights, target_id: int, baseline_id: int | None = None
) -> dict[str, torch.Tensor]:
    """Direct effects on the pre-softcap target logit at ``trace.pos`` of every component.

    Returns:
        ``{"embed": scalar, "attn": [n_layers], "mlp": [n_layers]}``; their sum equals the
        pre-softcap logit (or logit difference) up to float error.
    """
    p = trace.pos
    v = readout(w, target_id, baseline_id) * w.g_final * inv_rms(trace.final_in[p], w.eps)
    attn = trace.attn_out[:, p] * w.g_post_attn * inv_rms(trace.attn_out[:, p], w.eps)[:, None]
    mlp = trace.mlp_out[:, p] * w.g_post_mlp * inv_rms(trace.mlp_out[:, p], w.eps)[:, None]
    return {"embed": trace.embed[p] @ v, "attn": attn @ v, "mlp": mlp @ v}


def norm_scales(trace: Trace, w: Weights) -> dict[str, list[float]]:
    """The frozen ``1 / rms`` values used at the target position (recorded in the meta)."""
    p = trace.pos
    return {
        "final_inv_rms": [float(inv_rms(trace.final_in[p], w.eps))],
        "post_mlp_inv_rms": inv_rms(trace.mlp_out[:, p], w.eps).tolist(),
    }
