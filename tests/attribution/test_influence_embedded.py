"""Influence on the real embedded Gemma 3 270M (slow): closure, act×grad vs ablation, peaks."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from neuron_signatures.cli import main
from tests.tiny_models import exact_dump_args

pytestmark = pytest.mark.slow


def test_embedded_model_influence_closure_and_causal_check(tmp_path: Path) -> None:
    prompts = tmp_path / "p.json"
    prompts.write_text(json.dumps([{"id": "austin", "text": "The capital city of Texas is"}]))
    run = tmp_path / "run"
    assert main(["dump", *exact_dump_args(prompts, run)]) == 0
    assert main(["analyze", "--run_dir", str(run), "--top_k", "20"]) == 0
    base = ["analyze", "--mode", "influence", "--run_dir", str(run), "--prompt_id", "austin"]
    assert main([*base, "--influence_metric", "dla", "--top_k", "20"]) == 0
    assert main([*base, "--influence_metric", "act_grad", "--verify_top", "10"]) == 0
    folder = run / "analysis"
    (dla_meta,) = folder.glob("influence_austin_dla_*_meta.json")
    meta = json.loads(dla_meta.read_text())
    closure = meta["closure"]
    assert closure["abs_error"] < 1e-3 * (1 + abs(closure["pre_softcap_objective"]))
    (ag_meta,) = folder.glob("influence_austin_act_grad_*_meta.json")
    verify = json.loads(ag_meta.read_text())["verify"]
    assert verify["n"] == 10 and verify["spearman"] > 0.5
