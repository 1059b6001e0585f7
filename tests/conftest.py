"""Shared fixtures: tiny random Gemma 2 / Gemma 3 models and a tiny run captured once."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

from tests.tiny_models import exact_dump_args, make_models, make_tokenizer, save_model_folder

PROMPT_TEXTS = {
    "seed_prompt": "The capital of the state containing Dallas is",
    "probe_1_Austin": "entity : The capital city of Texas is Austin",
    "probe_2_Texas": "entity : The state containing Dallas is Texas",
    "short": "hello world",
}


@pytest.fixture(scope="session", autouse=True)
def _score_cache(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """Write scores and model-check verdicts are cached in folders of the session, never in the
    user's model cache."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("NEURON_SIGNATURES_SCORE_CACHE", str(tmp_path_factory.mktemp("score_cache")))
        mp.setenv("NEURON_SIGNATURES_MODEL_CHECKS", str(tmp_path_factory.mktemp("model_checks")))
        yield


@pytest.fixture(scope="session")
def tiny_tokenizer(tmp_path_factory: pytest.TempPathFactory) -> Any:
    return make_tokenizer(tmp_path_factory.mktemp("tok"))


@pytest.fixture(scope="session", params=["gemma2", "gemma3"])
def arch(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(scope="session")
def tiny_pair(arch: str, tiny_tokenizer: Any) -> tuple[Any, Any]:
    """(LoadedModel wrapping the bridge, plain transformers reference with equal weights)."""
    from neuron_signatures.models import wrap_hf_model

    bridge_copy, ref = make_models(arch)
    lm = wrap_hf_model(bridge_copy, tiny_tokenizer, name=f"tiny-{arch}", dtype="fp32")
    return lm, ref


@pytest.fixture(scope="session")
def atlas_lm(tiny_tokenizer: Any) -> Any:
    """The tiny random Gemma 2 model the test atlases are built with (text search and steering
    run it)."""
    from neuron_signatures.models import wrap_hf_model

    model, _ = make_models("gemma2")
    return wrap_hf_model(model, tiny_tokenizer, name="tiny-gemma2", dtype="fp32")


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A local Gemma 2 model folder usable as --model_name."""
    return save_model_folder("gemma2", tmp_path_factory.mktemp("models") / "tiny-gemma2")


@pytest.fixture(scope="session")
def prompts_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import json

    p = tmp_path_factory.mktemp("prompts") / "prompts.json"
    p.write_text(json.dumps([{"id": k, "text": v} for k, v in PROMPT_TEXTS.items()]))
    return p


@pytest.fixture(scope="session")
def tiny_run(
    tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path, prompts_file: Path
) -> Path:
    """A complete fp32 run of the tiny Gemma 2 folder model on PROMPT_TEXTS (captured once)."""
    from neuron_signatures.cli import main

    out = tmp_path_factory.mktemp("runs") / "tiny"
    rc = main(["dump", *exact_dump_args(prompts_file, out, tiny_model_dir), "--batch_size", "2"])
    assert rc == 0
    return out
