"""The real embedded Gemma 3 270M (slow): clean generation equals the plain model's greedy
``generate``, and an edit equals the same edit on the down_proj input of the plain model."""

from __future__ import annotations

import pytest
import torch

from neuron_signatures.interventions import add_generation, parse_positions, parse_set
from neuron_signatures.interventions import run_interventions as run
from tests.interventions.reference import PROMPT, plain_logits

pytestmark = pytest.mark.slow


def test_embedded_model_against_plain_transformers() -> None:
    from transformers import AutoModelForCausalLM

    from neuron_signatures.models import embedded_model_dir, load_model

    lm = load_model("gemma3-270m", "cpu", "fp32")
    ref = AutoModelForCausalLM.from_pretrained(embedded_model_dir(), dtype=torch.float32).eval()
    sets = [parse_set("L17/N345=0; scale L16/N1682=3", "after")]
    pos = parse_positions("last")
    res = add_generation(lm, run(lm, PROMPT, sets, pos), sets, pos, 6)
    ids = res.token_ids
    with torch.no_grad():
        greedy = ref.generate(torch.tensor([ids]), max_new_tokens=6, do_sample=False)
    assert res.rows[0].continuation_ids == greedy[0, len(ids) :].tolist()
    edits = [(17, 345, "set", 0.0), (16, 1682, "scale", 3.0)]
    want = plain_logits(ref, ids, edits, [len(ids) - 1])[-1]
    torch.testing.assert_close(res.logits[1], want, rtol=1e-4, atol=1e-3)
    assert res.rows[1].kl > 1e-3  # these neurons matter on this prompt
