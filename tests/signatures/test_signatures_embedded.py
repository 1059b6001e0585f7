"""End to end on the real embedded Gemma 3 270M with the bundled probe prompts (slow)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from neuron_signatures.analysis.results import load_signatures
from neuron_signatures.cli import main

pytestmark = pytest.mark.slow

DOCS = Path(__file__).resolve().parents[2] / "docs" / "probe_prompts_list.json"
# neurons that were Semantic, Say X and Relationship in the demo run (bf16, CPU)
NEURONS = "0:1462,0:1492,5:743,5:501,17:352,17:345"


def test_signatures_on_the_bundled_probe_prompts(tmp_path: Path) -> None:
    run_dir, out = tmp_path / "run", tmp_path / "sig"
    rc = main(["dump", "--prompts_json", str(DOCS), "--out_dir", str(run_dir), "--device", "cpu",
               "--layers", "0,5,17", "--no_progress"])  # fmt: skip
    assert rc == 0
    rc = main(["signatures", "--run_dir", str(run_dir), "--seed_prompt_id", "seed_prompt",
               "--neuron_ids", NEURONS, "--out_dir", str(out), "--name", "demo"])  # fmt: skip
    assert rc == 0
    doc = json.loads((out / "signatures_demo.json").read_text())
    assert doc["kind"] == "signatures" and doc["format_version"] == 2
    assert doc["n_layers"] == 18 and len(doc["neurons"]) == 6
    classes = {n["class"] for n in doc["neurons"]}
    assert classes <= {"semantic", "say_x", "relationship", "unclassified"}
    assert classes - {"unclassified"}, "the demo's classified neurons all lost their class"
    for n in doc["neurons"]:
        assert (n["name"] is None) == (n["class"] == "unclassified") and n["reasons"]
        # the Say X write check ran on the real model (262,144 tokens)
        assert (n["say_x_write_rank"] is not None) == (n["class"] == "say_x")
        if n["class"] == "say_x":
            assert n["say_x_token"] in n["name"] and 1 <= n["say_x_write_rank"] <= 262144
        assert len(n["probes"]) == 10 and all(p["peak_pos"] >= 1 for p in n["probes"])
        assert n["seed"]["cosine_seed"] == pytest.approx(1.0, abs=1e-4)
        located = next(p for p in n["probes"] if p["probe_id"] == "probe_7_located_in")
        assert located["concept"] == "located in" and located["concept_type"] == "relationship"
        assert located["concept_in_probe"]
    assert set(load_signatures(out)) == {tuple(map(int, p.split(":"))) for p in NEURONS.split(",")}
    meta = json.loads((out / "signatures_demo_meta.json").read_text())
    assert meta["thresholds"]["early_layer_max_resolved"] == 2
    assert meta["thresholds"]["late_layer_min_resolved"] == 5
    assert meta["say_x_write_check"]["status"] in ("checked", "no say_x neuron")
    assert (out / "signatures_demo.parquet").is_file() and (out / "supernodes_demo.json").is_file()
