"""Fixtures for the terminal browser: synthetic runs (no model) with and without analysis files."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

N_LAYERS, D_MLP = 4, 256

# Tokens that a careless UI would mangle: markup, newline, tab, a control character, wide glyphs.
TRICKY = ["▁[bold]x[/bold]", "\n", "\t", "\x07", "東京", "▁café", "\\", ""]


@dataclass
class SynthRun:
    """A run written from known arrays: ``acts[i]`` is prompt i's ``[n_layers, seq, d_mlp]``."""

    path: Path
    prompts: list[dict]
    acts: list[np.ndarray]


def make_prompts(n: int, seed: int = 0, long_every: int = 0) -> list[dict]:
    """``n`` prompts of 5..24 tokens (BOS first); every ``long_every``-th one has 300 tokens."""
    rng = np.random.default_rng(seed)
    words = ["▁The", "▁capital", "▁of", "▁Texas", "▁is", "▁Austin", ",", "▁city", *TRICKY]
    prompts = []
    for i in range(n):
        seq = 300 if long_every and i % long_every == long_every - 1 else int(rng.integers(5, 25))
        toks = ["<bos>"] + [words[int(j)] for j in rng.integers(0, len(words), seq - 1)]
        prompts.append(
            {
                "probe_id": f"p{i:04d}_{'austin' if i % 3 == 0 else 'dallas'}",
                "text": "".join(toks[1:]).replace("▁", " "),
                "token_ids": [2] + [int(x) for x in rng.integers(3, 5000, seq - 1)],
                "tokens": toks,
            }
        )
    return prompts


def make_acts(prompts: list[dict], seed: int = 1, d_mlp: int = D_MLP) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    acts = []
    for p in prompts:
        a = rng.normal(0, 1, (N_LAYERS, len(p["tokens"]), d_mlp)).astype(np.float32)
        a[:, 0, :] = 30.0  # a BOS sink, as in Gemma
        acts.append(a)
    return acts


def build(path: Path, n: int, long_every: int = 0, d_mlp: int = D_MLP) -> SynthRun:
    from neuron_signatures.store.build import write_run

    prompts = make_prompts(n, long_every=long_every)
    acts = make_acts(prompts, d_mlp=d_mlp)
    write_run(path, prompts, acts, save_dtype="fp32", prompts_per_shard=16)
    return SynthRun(path, prompts, acts)


def write_analysis(run_dir: Path, prompt_id: str) -> None:
    """Hand-made analysis files: a peaks ranking, an influence ranking and signatures."""
    out = run_dir / "analysis"
    out.mkdir(exist_ok=True)
    top = [(2, 17, 3.5, "▁Austin"), (1, 250, 2.25, "\n"), (3, 5, 1.0, "[red]")]
    (out / "top_neurons.json").write_text(
        json.dumps(
            {
                "format_version": 1,
                "kind": "top_neurons",
                "neurons": [
                    {
                        "rank": r + 1,
                        "layer": la,
                        "neuron": ne,
                        "mean_peak_abs": s,
                        "mode_peak_token_ascii": t,
                    }
                    for r, (la, ne, s, t) in enumerate(top)
                ],
            }
        )
    )
    records = [
        {
            "rank": 1,
            "layer": 3,
            "neuron": 200,
            "ctx_idx": 2,
            "activation": 1.0,
            "influence": -4.5,
            "token_ascii": " of",
        },
        {
            "rank": 2,
            "layer": 0,
            "neuron": 9,
            "ctx_idx": 1,
            "activation": 0.5,
            "influence": 2.0,
            "token_ascii": " The",
        },
    ]
    (out / f"influence_{prompt_id}_dla_next_token_pos-1_tok42.json").write_text(
        json.dumps(
            {
                "format_version": 1,
                "kind": "influence",
                "prompt_id": prompt_id,
                "metric": "dla",
                "target_mode": "next_token",
                "records": records,
            }
        )
    )
    (out / "signatures_top.json").write_text(
        json.dumps(
            {
                "kind": "signatures",
                "neurons": [
                    {"layer": 2, "neuron": 17, "class": "lexical", "name": "Austin detector"}
                ],
            }
        )
    )


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="session")
def synth_run(tmp_path_factory: pytest.TempPathFactory) -> SynthRun:
    """12 prompts (one of 300 tokens), 4 layers x 256 neurons, no analysis folder."""
    return build(tmp_path_factory.mktemp("tui") / "plain", 12, long_every=6)


@pytest.fixture(scope="session")
def ranked_run(tmp_path_factory: pytest.TempPathFactory) -> SynthRun:
    """Like ``synth_run`` plus analysis files (peaks, influence on prompt 5, signatures)."""
    run = build(tmp_path_factory.mktemp("tui") / "ranked", 12, long_every=6)
    write_analysis(run.path, run.prompts[5]["probe_id"])
    return run
