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


def test_embedded_model_prediction_matches_plain_transformers(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The top-1 token influence reports is the plain transformers model's, with its probability."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from neuron_signatures.models.convert import embedded_model_dir
    from neuron_signatures.store import open_run

    text = "The capital of the state containing Dallas is"
    prompts = tmp_path / "p.json"
    prompts.write_text(json.dumps([{"id": "seed_prompt", "text": text}]))
    run = tmp_path / "run"
    assert main(["dump", *exact_dump_args(prompts, run)]) == 0
    base = ["analyze", "--mode", "influence", "--run_dir", str(run), "--influence_metric", "dla"]
    capsys.readouterr()
    assert main(base) == 0  # top1_logit at the last position
    first = capsys.readouterr().out.splitlines()[0]
    (path,) = (run / "analysis").glob("influence_seed_prompt_dla_top1_logit_pos8_tok*[0-9].json")
    doc = json.loads(path.read_text())
    meta = json.loads(path.with_name(path.stem + "_meta.json").read_text())
    # Independent: plain transformers on the cached converted folder, its own tokenizer.
    folder = embedded_model_dir()
    ids = AutoTokenizer.from_pretrained(folder)(text).input_ids
    assert ids == open_run(run).prompt("seed_prompt").token_ids
    hf = AutoModelForCausalLM.from_pretrained(folder, torch_dtype=torch.float32).eval()
    with torch.no_grad():
        probs = torch.softmax(hf(torch.tensor([ids])).logits[0, -1].double(), -1)
    top = probs.topk(5)
    assert doc["target_token_id"] == int(top.indices[0]) == meta["top_tokens"][0]["token_id"]
    assert doc["target_rank"] == meta["target_rank"] == 1
    assert doc["target_prob"] == pytest.approx(float(top.values[0]), rel=1e-3)
    got = [t["prob"] for t in meta["top_tokens"]]
    assert got == pytest.approx(top.values.tolist(), rel=1e-3, abs=1e-5)
    assert f"p={doc['target_prob']:.3f}, rank 1" in first
