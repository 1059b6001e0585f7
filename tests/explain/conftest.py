"""Explain fixtures: a tiny model with a planted token detector, its atlas and explanations."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest

from tests.atlas.conftest import build, corpus_lines
from tests.tiny_models import make_models

PLANTED_LAYER, PLANTED_NEURON, PLANTED_WORD = 0, 5, "Austin"


def plant_detector(model: Any, token_id: int, layer: int = PLANTED_LAYER) -> None:
    """Make neuron ``PLANTED_NEURON`` of ``layer`` fire on ``token_id`` only.

    Residual dimension 0 carries the token alone: every embedding is 0 there but ``token_id``'s,
    and no attention output writes it (row 0 of ``o_proj`` is 0; the post-attention norm keeps
    a 0 at 0). The neuron's gate and up rows read dimension 0 only, so its activation
    ``gelu(x0) * x0`` is 0 on every other token and large on ``token_id``. Valid for layer 0.
    """
    import torch

    blk = model.model.layers[layer]
    with torch.no_grad():
        emb = model.model.embed_tokens.weight
        emb[:, 0] = 0.0
        emb[token_id, 0] = 3.0
        blk.self_attn.o_proj.weight[0, :] = 0.0
        blk.pre_feedforward_layernorm.weight[0] = 0.0
        for proj in (blk.mlp.gate_proj, blk.mlp.up_proj):
            proj.weight[PLANTED_NEURON, :] = 0.0
            proj.weight[PLANTED_NEURON, 0] = 1.0


@pytest.fixture(scope="session")
def explain_corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    p = tmp_path_factory.mktemp("explain_corpus") / "corpus.txt"
    p.write_text("\n".join(corpus_lines(60, seed=3)) + "\n")
    return p


@pytest.fixture(scope="session")
def planted_lm(tiny_tokenizer: Any) -> Any:
    from neuron_signatures.models import wrap_hf_model

    model, _ = make_models("gemma2")
    plant_detector(model, int(tiny_tokenizer.convert_tokens_to_ids(PLANTED_WORD)))
    return wrap_hf_model(model, tiny_tokenizer, name="tiny-planted", dtype="fp32")


@pytest.fixture(scope="session")
def planted_atlas(
    planted_lm: Any, explain_corpus: Path, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    """An atlas of the planted model (every layer), without explanations: copy it to use it."""
    return build(planted_lm, tmp_path_factory.mktemp("planted") / "A", explain_corpus)


EXPLAIN_KW: dict[str, Any] = dict(n_random_tokens=240, batch_size=4)


def explain(lm: Any, atlas: Path, **kw: Any) -> Path:
    from neuron_signatures.explain import ExplainConfig, explain_atlas

    return explain_atlas(ExplainConfig(atlas=atlas, **{**EXPLAIN_KW, **kw}), load=lambda _: lm)


@pytest.fixture(scope="session")
def explained(
    planted_lm: Any, planted_atlas: Path, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    """A copy of the planted atlas with its explanations (the atlas folder)."""
    root = tmp_path_factory.mktemp("explained") / "A"
    shutil.copytree(planted_atlas, root)
    explain(planted_lm, root)
    return root


def explanation_bytes(atlas: Path) -> dict[str, bytes]:
    """Every file of the explanations but run.json (timings) and .lock (the writer's pid)."""
    out = atlas / "explanations"
    return {
        str(p.relative_to(out)): p.read_bytes()
        for p in sorted(out.rglob("*"))
        if p.is_file() and p.name not in ("run.json", ".lock")
    }
