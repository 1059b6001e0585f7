"""The batched before/after comparison against the plain transformers model, the causal check,
and a float64 KL reference."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from neuron_signatures.interventions import (
    Edit,
    InterventionSet,
    parse_positions,
    parse_set,
    run_interventions,
)
from tests.interventions.reference import PROMPT, plain_logits, prompt_ids

SETS = [
    "L1/N3=0; scale L2/N5=3",
    "scale L0/N7=2; add L0/N7=1.5; add L2/N60=-4",  # one neuron twice: scale, then add
    "L2/N5=6.5",
]


def as_ref(s: InterventionSet) -> list[tuple[int, int, str, float]]:
    return [(e.layer, e.neuron, e.op, e.value) for e in s.edits]


@pytest.mark.parametrize("positions", ["all", "1,3,-1"])  # last: the causal test below
def test_edits_equal_editing_the_down_proj_input(
    tiny_pair: tuple[Any, Any], positions: str
) -> None:
    lm, ref = tiny_pair
    sets = [parse_set(t, f"set {i}") for i, t in enumerate(SETS)]
    pos = parse_positions(positions)
    res = run_interventions(lm, PROMPT, sets, pos, listed=[5, 9])
    ids = prompt_ids(lm.tokenizer)
    assert res.token_ids == ids
    where = pos.resolve(len(ids))
    clean = plain_logits(ref, ids, [], None)[-1]
    torch.testing.assert_close(res.logits[0], clean, rtol=1e-5, atol=1e-5)
    for r, s in enumerate(sets, start=1):
        want = plain_logits(ref, ids, as_ref(s), where)[-1]
        torch.testing.assert_close(res.logits[r], want, rtol=1e-5, atol=1e-5)
        assert float((want - clean).abs().max()) > 1e-3  # the edit really changed the output
        # listed tokens: logit, softmax probability and rank (1 = argmax) of the reference row
        p = torch.softmax(want.double(), -1)
        order = torch.argsort(want, descending=True).tolist()
        for stat, tid in zip(res.rows[r].listed, [5, 9], strict=True):
            assert stat.token_id == tid and stat.logit == pytest.approx(float(want[tid]), abs=1e-5)
            assert stat.prob == pytest.approx(float(p[tid]), rel=1e-4)
            assert stat.rank == order.index(tid) + 1
        assert [t.token_id for t in res.rows[r].top[:3]] == order[:3]
        assert res.rows[r].edits == [str(e) for e in s.edits]


def test_batched_sets_equal_each_set_alone(tiny_pair: tuple[Any, Any]) -> None:
    lm, _ref = tiny_pair
    sets = [parse_set(t, f"set {i}") for i, t in enumerate(SETS)]
    pos = parse_positions("all")
    batched = run_interventions(lm, PROMPT, sets, pos)
    for r, s in enumerate(sets, start=1):
        alone = run_interventions(lm, PROMPT, [s], pos)
        torch.testing.assert_close(batched.logits[r], alone.logits[1], rtol=1e-6, atol=1e-6)
        torch.testing.assert_close(batched.logits[0], alone.logits[0], rtol=1e-6, atol=1e-6)
        assert batched.rows[r].kl == pytest.approx(alone.rows[1].kl, rel=1e-4, abs=1e-9)


def kl64(p_logits: np.ndarray, q_logits: np.ndarray) -> float:
    """KL(p‖q) from logits, float64, by the textbook formula."""
    p = np.exp(p_logits - p_logits.max())
    p /= p.sum()
    q = np.exp(q_logits - q_logits.max())
    q /= q.sum()
    return float(np.sum(p * (np.log(p) - np.log(q))))


def test_kl_is_zero_without_edits_and_matches_float64(tiny_pair: tuple[Any, Any]) -> None:
    lm, ref = tiny_pair
    sets = [InterventionSet((), "empty"), parse_set(SETS[0], "a"), parse_set(SETS[2], "b")]
    res = run_interventions(lm, PROMPT, sets, parse_positions("all"))
    assert res.rows[0].kl == 0.0 and res.rows[1].kl == 0.0
    ids = prompt_ids(lm.tokenizer)
    before = plain_logits(ref, ids, [], None)[-1].double().numpy()
    for r in (2, 3):
        mine = kl64(res.logits[0].double().numpy(), res.logits[r].double().numpy())
        assert res.rows[r].kl == pytest.approx(mine, rel=1e-9, abs=1e-15)
        after = plain_logits(ref, ids, as_ref(sets[r - 1]), None)[-1].double().numpy()
        assert res.rows[r].kl == pytest.approx(kl64(before, after), rel=1e-3)
        assert res.rows[r].kl > 0


def test_zero_ablation_reproduces_the_causal_check(
    tiny_pair: tuple[Any, Any], tiny_run: Path, tmp_path: Path
) -> None:
    """``analyze --verify_top`` ablates the top neurons at the target position and records the
    real logit change: one zero-ablation set per neuron gives the same changes."""
    from neuron_signatures.analysis.selection import make_selection
    from neuron_signatures.attribution.influence import InfluenceConfig, run_influence
    from neuron_signatures.attribution.trace import ablated_rows
    from neuron_signatures.store import open_run

    lm, _ref = tiny_pair
    cfg = InfluenceConfig(
        run_dir=tiny_run,
        prompt_id="seed_prompt",
        verify_top=5,
        out_dir=tmp_path,
        selection=make_selection(10, None),
    )
    (inf,) = run_influence(cfg, lm=lm)
    p = open_run(tiny_run).prompt("seed_prompt")
    assert inf.target.pos == len(p.token_ids) - 1  # top1_logit at the last position
    top = inf.table.head(5)
    layers, neurons = top["layer"].to_numpy(), top["neuron"].to_numpy()
    sets = [
        InterventionSet((Edit(int(la), int(n), "set", 0.0),), f"L{la}/N{n}")
        for la, n in zip(layers, neurons, strict=True)
    ]
    res = run_interventions(lm, p.text, sets, parse_positions("last"), [inf.target.token_id])
    assert res.token_ids == list(p.token_ids)
    logit = np.array([row.listed[0].logit for row in res.rows], np.float32)
    np.testing.assert_allclose(logit[1:] - logit[0], top["real_delta"], rtol=1e-6, atol=1e-7)
    # the same batch through the causal check's own hook gives the very same logits
    lay = torch.tensor([-1, *layers.tolist()])
    post, _pre = ablated_rows(
        lm,
        p.token_ids,
        inf.target.pos,
        inf.target.pos,
        lay,
        torch.tensor([0, *neurons]),
        torch.zeros(len(lay)),
    )
    assert torch.equal(post, res.logits)
