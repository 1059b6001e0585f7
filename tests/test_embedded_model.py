"""The real embedded Gemma 3 270M (slow: converts the GGUF once, then loads from the cache)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from neuron_signatures.cli import main
from neuron_signatures.store import open_run, verify_run

pytestmark = pytest.mark.slow

DOCS = Path(__file__).resolve().parents[1] / "docs" / "probe_prompts_list.json"


def test_dump_probe_prompts_with_embedded_model(tmp_path: Path) -> None:
    out = tmp_path / "run"
    rc = main(
        [
            "dump",
            "--prompts_json",
            str(DOCS),
            "--out_dir",
            str(out),
            "--device",
            "cpu",
            "--layers",
            "0,8,17",
            "--no_progress",
        ]
    )
    assert rc == 0
    run = open_run(out)
    assert run.model_name == "gemma3-270m" and run.d_mlp == 2048 and run.n_layers == 18
    assert run.layers == [0, 8, 17]
    seed = run.prompt("seed_prompt")
    assert seed.tokens[0] == "<bos>" and seed.token_ids.count(2) == 1
    acts = run.prompt_acts("seed_prompt")
    assert acts.shape == (3, seed.seq_len, 2048) and np.isfinite(acts).all()
    # BOS is an attention sink: its row is the same in every prompt.
    np.testing.assert_array_equal(run.prompt_acts(1)[:, 0], acts[:, 0])
    assert verify_run(out).ok
