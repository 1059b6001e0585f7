"""Say X write check: the named token's rank among what the neuron's weights promote.

A tiny Gemma 2 whose unembedding is rebuilt so that every token's write score for one neuron is
a chosen number: the rank of each token is then known before anything runs.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch

from neuron_signatures.analysis.results import load_signatures
from neuron_signatures.cli import main
from neuron_signatures.signatures.write_check import token_ranks
from neuron_signatures.store.build import write_run
from tests.tiny_models import make_models, make_tokenizer

SAY = (2, 5)  # 3 layers: early <= 0, late >= 1
PROBES = ["The capital of Texas is Austin", "The state containing Dallas is Austin",
          "The largest city in Texas is Austin", "Austin is the capital of Texas"]  # fmt: skip
AUSTIN_RANK = 3  # by construction of the unembedding below


def test_token_ranks_by_hand() -> None:
    w_u = torch.tensor([[1.0, 0.0], [3.0, 0.0], [5.0, 0.0], [5.0, 0.0], [-2.0, 0.0], [4.0, 1.0]])
    dirs = torch.tensor([[1.0, -1.0], [0.0, 0.0]])  # column 1 is column 0 flipped
    ranks, top = token_ranks(w_u, dirs, [[1], [4, 0]], chunk=4)  # chunks of 4 and 2 rows
    # scores col 0: 1 3 5 5 -2 4 -> token 1 (3) has 5, 5, 4 above: rank 4
    # col 1: -1 -3 -5 -5 2 -4 -> best of tokens 4 (2) and 0 (-1): rank 1
    assert ranks.tolist() == [4, 1] and top.tolist() == [2, 4]
    tie, _ = token_ranks(w_u, dirs[:, :1], [[3]])
    assert tie.tolist() == [1]  # a tie for the top counts for the token


@pytest.fixture(scope="module")
def say_model(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Any, dict[str, int]]:
    """A model folder where neuron SAY's write score of token t is exactly ``alpha[t]``."""
    folder = tmp_path_factory.mktemp("say") / "tiny"
    tok = make_tokenizer(folder)
    model, _ = make_models("gemma2")
    layer, n = SAY
    with torch.no_grad():
        blk = model.model.layers[layer]
        d = blk.mlp.down_proj.weight[:, n] * (1 + blk.post_feedforward_layernorm.weight)
        d = d * (1 + model.model.norm.weight)
        vocab = model.lm_head.weight.shape[0]
        alpha = torch.arange(vocab, dtype=torch.float32) - 100.0  # all distinct, all < 0
        top = [tok.convert_tokens_to_ids(w) for w in ("foo", "bar", "Austin", "Texas")]
        alpha[top] = torch.tensor([30.0, 20.0, 10.0, 5.0])  # Austin third
        # W_U[t] = alpha[t] d / |d|^2 + a part orthogonal to d: score_t = alpha[t]
        noise = torch.randn(vocab, d.shape[0])
        noise -= (noise @ d)[:, None] * d[None, :] / (d @ d)
        model.lm_head.weight.copy_(alpha[:, None] * d[None, :] / (d @ d) + noise)
    model.save_pretrained(folder)
    ids = {w: tok.convert_tokens_to_ids(w) for w in ("foo", "Austin", "Texas")}
    return folder, tok, ids


def _run(folder: Path, model: Path, tok: Any, sign: float = 1.0) -> Path:
    """A hand-built run of the model: neuron SAY fires (with ``sign``) on every "is"."""
    recs, acts = [], []
    for i, text in enumerate(["The capital of the state containing Dallas is", *PROBES]):
        ids = [2, *tok(text, add_special_tokens=False).input_ids]
        toks = tok.convert_ids_to_tokens(ids)
        recs.append({"probe_id": "seed_prompt" if i == 0 else f"probe_{i}", "text": text,
                     "token_ids": ids, "tokens": toks})  # fmt: skip
        a = np.zeros((3, len(ids), 64), np.float32)
        a[SAY[0], [j for j, t in enumerate(toks) if t == "is"], SAY[1]] = 2.0 * sign
        a[1, 1:, 7] = np.linspace(0.1, 1.0, len(ids) - 1)  # some other neuron, not Say X
        acts.append(a)
    write_run(folder, prompts=recs, acts=acts, model_name=str(model), save_dtype="fp32")
    return folder


def _signatures(run: Path, out: Path, *extra: str) -> dict[tuple[int, int], dict]:
    rc = main(["signatures", "--run_dir", str(run), "--neuron_ids", "L2/N5,1:7",
               "--out_dir", str(out), "--name", "w", *extra])  # fmt: skip
    assert rc == 0
    return load_signatures(out)


def test_say_x_name_is_checked_against_the_write_scores(
    say_model: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model, tok, _ = say_model
    sigs = _signatures(_run(tmp_path / "run", model, tok), tmp_path / "out")
    say, other = sigs[SAY], sigs[(1, 7)]
    assert say["class"] == "say_x" and say["name"] == "Say (Austin)"
    assert say["say_x_token"] == "Austin"
    assert say["say_x_write_rank"] == AUSTIN_RANK and say["say_x_write_agrees"] is True
    assert other["say_x_token"] is None and other["say_x_write_rank"] is None
    assert other["say_x_write_agrees"] is None
    out = capsys.readouterr().out
    assert "Say (Austin)  (write rank 3: agrees)" in out
    assert "Say X write check (" in out and "1 of 1 names among their neuron's top 20" in out
    table = pd.read_parquet(tmp_path / "out" / "signatures_w.parquet")
    rows = table[table["layer"] == SAY[0]]
    assert (rows["say_x_write_rank"] == AUSTIN_RANK).all() and rows["say_x_write_agrees"].all()
    assert table[table["layer"] == 1]["say_x_write_rank"].isna().all()
    meta = json.loads((tmp_path / "out" / "signatures_w_meta.json").read_text())
    assert meta["say_x_write_check"]["status"] == "checked"
    assert meta["say_x_write_check"]["vocab_size"] == 96


def test_top_n_and_negative_firing(say_model: Any, tmp_path: Path,
                                   capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    model, tok, _ = say_model
    cfg = tmp_path / "c.toml"
    cfg.write_text("say_x_write_top_n = 2\n")
    run = _run(tmp_path / "run", model, tok)
    say = _signatures(run, tmp_path / "a", "--config", str(cfg))[SAY]
    assert say["say_x_write_rank"] == 3 and say["say_x_write_agrees"] is False
    assert "Say (Austin)  (write rank 3: top promoted 'foo')" in capsys.readouterr().out
    # firing negative, the neuron promotes what its direction suppresses: Austin's alpha (10)
    # is above every other alpha but foo, bar: from the bottom it is 96 - 2 = 94th
    neg = _run(tmp_path / "neg", model, tok, sign=-1.0)
    assert _signatures(neg, tmp_path / "b")[SAY]["say_x_write_rank"] == 94


def test_skip_and_no_model_needed(say_model: Any, tmp_path: Path,
                                  capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    model, tok, _ = say_model
    run = _run(tmp_path / "run", model, tok)
    say = _signatures(run, tmp_path / "a", "--no_write_check")[SAY]
    assert say["say_x_token"] == "Austin" and say["say_x_write_rank"] is None
    assert say["say_x_write_agrees"] is None
    assert "Say X write check: skipped (--no_write_check)" in capsys.readouterr().out
    # a run whose model cannot load: the error names the fix
    bad = tmp_path / "bad"
    _run(bad, tmp_path / "no_such_model", tok)
    rc = main(["signatures", "--run_dir", str(bad), "--neuron_ids", "2:5", "--out_dir",
               str(tmp_path / "c")])  # fmt: skip
    assert rc == 2 and "--no_write_check" in capsys.readouterr().err
    # no Say X neuron: the model is never loaded
    rc = main(["signatures", "--run_dir", str(bad), "--neuron_ids", "1:7", "--out_dir",
               str(tmp_path / "d")])  # fmt: skip
    assert rc == 0 and "Say X write check: no Say X neuron" in capsys.readouterr().out
