"""Objectives on a logit row, and activation × gradient attribution.

``act_grad`` scores neuron ``n`` of layer ``l`` by ``a[l, c, n] · ∂objective/∂a[l, c, n]`` at the
scored position ``c`` (or summed over every position with ``--ctx_idx all``): the first-order
change of the objective when the activation is zeroed. One backward pass gives every neuron
(:func:`neuron_signatures.attribution.trace.run_trace`); the weights are frozen so no parameter
gradient is computed. The objective reads the model's output logits (after Gemma 2's final
softcap): ``logit`` (of the target), ``logprob`` (log-softmax of the target) or ``logit_diff``
(target minus a baseline token).
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from ..errors import BadArgumentError
from .trace import Trace

OBJECTIVES = ("logit", "logprob", "logit_diff")


def objective_of_rows(
    rows: torch.Tensor, objective: str, target_id: int, baseline_id: int | None = None
) -> torch.Tensor:
    """The objective of each logit row: ``rows [..., vocab]`` → ``[...]``."""
    if objective == "logit":
        return rows[..., target_id]
    if objective == "logprob":
        return torch.log_softmax(rows.float(), dim=-1)[..., target_id]
    if objective == "logit_diff":
        if baseline_id is None:
            raise BadArgumentError("--objective logit_diff needs --baseline_token or its _id")
        return rows[..., target_id] - rows[..., baseline_id]
    raise BadArgumentError(f"unknown objective {objective!r}: use one of {', '.join(OBJECTIVES)}")


def objective_fn(
    objective: str, target_id: Callable[[torch.Tensor], int], baseline_id: int | None
) -> Callable[[torch.Tensor], torch.Tensor]:
    """A scalar objective of one logit row; the target id may depend on the row (top-1)."""

    def fn(row: torch.Tensor) -> torch.Tensor:
        return objective_of_rows(row, objective, target_id(row.detach()), baseline_id)

    return fn


def act_grad(trace: Trace, ctx: int | None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(influence, gradient_sum, ctx_pos)``, each ``[n_layers, d_mlp]``.

    With ``ctx`` a position: ``a · g`` there, its gradient, and ``ctx`` everywhere. With ``ctx``
    None: ``Σ_p a_p · g_p`` over positions up to the target's, ``Σ_p g_p``, and the position of
    the largest ``|a_p · g_p|`` (the first on ties).
    """
    if trace.grads is None:
        raise ValueError("the trace has no gradients: run it with an objective")
    if ctx is not None:
        g = trace.grads[:, ctx]
        return trace.acts[:, ctx] * g, g, torch.full_like(g, ctx, dtype=torch.long)
    end = trace.pos + 1
    contrib = trace.acts[:, :end] * trace.grads[:, :end]  # [L, seq, d_mlp]
    return contrib.sum(1), trace.grads[:, :end].sum(1), contrib.abs().argmax(1)
