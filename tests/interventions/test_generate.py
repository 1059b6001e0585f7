"""Generation: the clean row against the plain model's greedy ``generate``, edited rows against a
plain-model loop with the down_proj input edited, and seeded sampling."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from neuron_signatures.interventions import InterventionSet, Positions, parse_positions, parse_set
from neuron_signatures.interventions.generate import eos_ids, generate
from tests.interventions.reference import plain_logits, prompt_ids

N_NEW = 8
N_EDITED = 5


def cut_at_eos(tokens: list[int], eos: set[int]) -> list[int]:
    for i, t in enumerate(tokens):
        if t in eos:
            return tokens[: i + 1]
    return tokens


def test_no_intervention_equals_plain_greedy_generate(tiny_pair: tuple[Any, Any]) -> None:
    lm, ref = tiny_pair
    ids = prompt_ids(lm.tokenizer)
    (before,) = generate(lm, ids, [], Positions("last"), N_NEW)
    with torch.no_grad():
        out = ref.generate(
            torch.tensor([ids]), max_new_tokens=N_NEW, do_sample=False, pad_token_id=0
        )[0, len(ids) :].tolist()
    assert before == cut_at_eos(out, eos_ids(lm)) and len(before) >= 1


def reference_loop(ref: Any, ids: list[int], s: InterventionSet, where: list[int] | None) -> list:
    """Greedy, recomputing the whole sequence, edits at prompt positions ``where`` (all: None)."""
    seq = list(ids)
    edits = [(e.layer, e.neuron, e.op, e.value) for e in s.edits]
    for _ in range(N_EDITED):
        seq.append(int(plain_logits(ref, seq, edits, where)[-1].argmax()))
    return seq[len(ids) :]


@pytest.mark.parametrize(
    ("arch", "positions"), [("gemma2", "all"), ("gemma3", "last")], indirect=["arch"]
)
def test_edited_generation_equals_the_plain_model_edited(
    tiny_pair: tuple[Any, Any], positions: str
) -> None:
    lm, ref = tiny_pair
    ids = prompt_ids(lm.tokenizer)
    sets = [parse_set("L0/N7=8; scale L2/N5=4", "a"), parse_set("add L1/N3=-6", "b")]
    pos = parse_positions(positions)
    got = generate(lm, ids, sets, pos, N_EDITED)
    eos = eos_ids(lm)
    where = pos.resolve(len(ids))
    for row, s in zip(got, [InterventionSet(()), *sets], strict=True):
        assert row == cut_at_eos(reference_loop(ref, ids, s, where), eos)


@pytest.mark.parametrize(
    "arch", ["gemma2"], indirect=True
)  # sampling does not depend on the architecture
def test_sampling_is_seeded(tiny_pair: tuple[Any, Any]) -> None:
    lm, _ref = tiny_pair
    ids = prompt_ids(lm.tokenizer)
    sets, where, n = [parse_set("L0/N7=8", "a")], Positions("all"), 4
    a = generate(lm, ids, sets, where, n, temperature=1.5, seed=3)
    assert a == generate(lm, ids, sets, where, n, temperature=1.5, seed=3)
    assert a != generate(lm, ids, sets, where, n, temperature=1.5, seed=4)  # near-flat softmax
    # a vanishing temperature samples the argmax: greedy
    greedy = generate(lm, ids, sets, where, n)
    assert generate(lm, ids, sets, where, n, temperature=1e-6, seed=3) == greedy
