"""DLA: closure over all components, and agreement with removing one neuron's direct path."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from neuron_signatures.attribution.dla import component_effects, dla, dla_coefficients
from neuron_signatures.attribution.trace import model_weights, run_trace

IDS = [2, 4, 5, 6, 7, 8, 9, 10]


def _ref_hidden(ref: Any, ids: list[int]) -> dict[str, torch.Tensor]:
    """Inputs of the final norm and of each post-feedforward norm in the plain HF model."""
    got: dict[str, torch.Tensor] = {}
    hs = [ref.model.norm.register_forward_pre_hook(lambda m, a: got.__setitem__("final", a[0]))]
    for i, layer in enumerate(ref.model.layers):
        hs.append(
            layer.post_feedforward_layernorm.register_forward_pre_hook(
                lambda m, a, i=i: got.__setitem__(f"mlp{i}", a[0])
            )
        )
        hs.append(
            layer.mlp.down_proj.register_forward_pre_hook(
                lambda m, a, i=i: got.__setitem__(f"act{i}", a[0])
            )
        )
    with torch.no_grad():
        got["logits"] = ref(torch.tensor([ids])).logits[0]
        got["pre"] = ref.lm_head(ref.model(torch.tensor([ids])).last_hidden_state)[0]
    for h in hs:
        h.remove()
    return got


@pytest.mark.parametrize("pos", [-1, 3])
def test_dla_closure(tiny_pair: tuple[Any, Any], pos: int) -> None:
    lm, ref = tiny_pair
    p = pos % len(IDS)
    tr = run_trace(lm, IDS, p)
    w = model_weights(lm)
    want = _ref_hidden(ref, IDS)
    torch.testing.assert_close(tr.pre_logits, want["pre"][p], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(tr.logits, want["logits"][p], rtol=1e-5, atol=1e-5)
    for t in (int(tr.logits.argmax()), 5, 17):
        comp = component_effects(tr, w, t)
        total = comp["embed"] + comp["attn"].sum() + comp["mlp"].sum()
        assert abs(float(total) - float(want["pre"][p, t])) < 1e-4 * (1 + abs(float(total)))
        infl, _ = dla(tr, w, t)
        torch.testing.assert_close(infl.sum(1), comp["mlp"], rtol=1e-4, atol=1e-5)
    cfg = ref.config
    if hasattr(cfg, "final_logit_softcapping") and cfg.final_logit_softcapping:
        cap = cfg.final_logit_softcapping  # Gemma 2: the model's output is softcapped
        torch.testing.assert_close(torch.tanh(want["pre"][p] / cap) * cap, tr.logits)


def test_dla_equals_removing_the_direct_path(tiny_pair: tuple[Any, Any]) -> None:
    """Remove one neuron's contribution from the residual entering the final norm, with the
    post-feedforward and final norm scales frozen at their clean values, on the plain model."""
    lm, ref = tiny_pair
    p, target = len(IDS) - 1, 11
    tr = run_trace(lm, IDS, p)
    infl, _ = dla(tr, model_weights(lm), target)
    clean = _ref_hidden(ref, IDS)
    eps = ref.config.rms_norm_eps

    def frozen(norm: Any, x: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        inv = torch.rsqrt(like.float().pow(2).mean(-1, keepdim=True) + eps)
        return x.float() * inv * (1.0 + norm.weight.float())

    for layer, neuron in [(0, 3), (1, 40), (2, 63)]:
        block = ref.model.layers[layer]
        a = clean[f"act{layer}"][0, p, neuron]
        write = a * block.mlp.down_proj.weight[:, neuron]
        direct = frozen(block.post_feedforward_layernorm, write, clean[f"mlp{layer}"][0, p])
        resid = clean["final"][0, p] - direct
        with torch.no_grad():
            logit = ref.lm_head(frozen(ref.model.norm, resid, clean["final"][0, p]))[target]
        change = float(clean["pre"][p, target] - logit)
        assert abs(change - float(infl[layer, neuron])) < 1e-5 * (1 + abs(change))


def test_dla_approx_is_the_prototype_formula(tiny_pair: tuple[Any, Any]) -> None:
    lm, ref = tiny_pair
    tr = run_trace(lm, IDS, 2)
    coef = dla_coefficients(tr, model_weights(lm), 7, exact=False)
    w_u = ref.lm_head.weight[7]
    for layer in range(3):
        torch.testing.assert_close(coef[layer], w_u @ ref.model.layers[layer].mlp.down_proj.weight)
