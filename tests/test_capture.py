"""Captured activations against an independent plain-transformers reference."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from neuron_signatures.capture import DumpConfig, plan_batches, run_dump, tokenize_prompts
from neuron_signatures.prompts import Prompt
from neuron_signatures.store import open_run
from tests.conftest import PROMPT_TEXTS

PROMPTS = [Prompt(k, v) for k, v in PROMPT_TEXTS.items()]


def reference_acts(ref: Any, token_ids: list[int]) -> np.ndarray:
    """Down-projection inputs from a plain HF forward: a pre-hook per layer, no TransformerLens."""
    got: dict[int, torch.Tensor] = {}
    handles = [
        layer.mlp.down_proj.register_forward_pre_hook(
            lambda _m, args, i=i: got.__setitem__(i, args[0].detach())
        )
        for i, layer in enumerate(ref.model.layers)
    ]
    try:
        with torch.no_grad():
            ref(torch.tensor([token_ids]))
    finally:
        for h in handles:
            h.remove()
    return torch.stack([got[i][0] for i in range(len(got))]).numpy()


def dump(lm: Any, out: Path, **kw: Any) -> Path:
    cfg = DumpConfig(
        prompts=PROMPTS, out_dir=out, model_dtype="fp32", save_dtype="fp32", progress=False, **kw
    )
    return run_dump(cfg, load=lambda _tok: lm)


def test_activations_equal_plain_transformers(tiny_pair: Any, tmp_path: Path) -> None:
    lm, ref = tiny_pair
    run = open_run(dump(lm, tmp_path / "run", batch_size=3))
    assert run.n_prompts == len(PROMPTS)
    for p in run.prompts:
        assert p.token_ids[0] == lm.tokenizer.bos_token_id
        assert p.token_ids.count(lm.tokenizer.bos_token_id) == 1
        want = reference_acts(ref, p.token_ids)
        got = run.prompt_acts(p.probe_id)
        assert got.shape == want.shape == (3, p.seq_len, 64)
        assert np.abs(got - want).max() <= 1e-5


def test_batched_padded_equals_one_at_a_time(tiny_pair: Any, tmp_path: Path) -> None:
    lm, _ = tiny_pair
    batched = open_run(dump(lm, tmp_path / "b", batch_size=4))
    single = open_run(dump(lm, tmp_path / "s", batch_size=1))
    assert len(batched.manifest["shards"]) == 1 and len(single.manifest["shards"]) == 4
    for p in batched.prompts:
        np.testing.assert_allclose(
            batched.prompt_acts(p.index), single.prompt_acts(p.index), rtol=0, atol=1e-5
        )


def test_layer_subset(tiny_pair: Any, tmp_path: Path) -> None:
    lm, ref = tiny_pair
    run = open_run(dump(lm, tmp_path / "sub", layers=[2, 0]))
    assert run.layers == [0, 2]
    p = run.prompts[0]
    want = reference_acts(ref, p.token_ids)
    assert np.abs(run.prompt_layer(0, 2) - want[2]).max() <= 1e-5
    assert run.prompt_acts(0).shape == (2, p.seq_len, 64)


def test_exactly_one_bos(tiny_tokenizer: Any) -> None:
    bos = tiny_tokenizer.bos_token_id
    recs = tokenize_prompts(
        tiny_tokenizer,
        [Prompt("a", "<bos> hello world"), Prompt("b", "hello")],
        prepend_bos=True,
        max_seq_len=64,
        truncate=False,
    )
    assert [r["token_ids"].count(bos) for r in recs] == [1, 1]
    recs = tokenize_prompts(
        tiny_tokenizer, [Prompt("b", "hello")], prepend_bos=False, max_seq_len=64, truncate=False
    )
    assert bos not in recs[0]["token_ids"]


def test_plan_batches_sorts_and_respects_budget() -> None:
    lengths = [5, 1, 9, 3, 3, 7]
    batches = plan_batches(lengths, batch_size=None, max_batch_tokens=12)
    flat = [i for b in batches for i in b]
    assert sorted(flat) == list(range(6))
    assert [lengths[i] for i in flat] == sorted(lengths)
    assert all(len(b) * max(lengths[i] for i in b) <= 12 or len(b) == 1 for b in batches)
    assert plan_batches(lengths, batch_size=2, max_batch_tokens=1) == [[1, 3], [4, 0], [5, 2]]


@pytest.mark.parametrize("save_dtype,tol", [("fp32", 0.0), ("bf16", 8e-3), ("fp16", 1e-3)])
def test_save_dtypes_round_trip(
    tiny_pair: Any, tmp_path: Path, save_dtype: str, tol: float
) -> None:
    lm, _ = tiny_pair
    exact = open_run(dump(lm, tmp_path / "exact"))
    cfg = DumpConfig(
        prompts=PROMPTS,
        out_dir=tmp_path / save_dtype,
        model_dtype="fp32",
        save_dtype=save_dtype,
        progress=False,
    )
    run = open_run(run_dump(cfg, load=lambda _t: lm))
    assert run.manifest["prompts"][0]["activation_tensor_dtype"].endswith(
        {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}[save_dtype]
    )
    for p in run.prompts:
        a, b = run.prompt_acts(p.index), exact.prompt_acts(p.index)
        assert np.all(np.abs(a - b) <= tol * np.abs(b) + 1e-6)


def test_auto_model_dtype(monkeypatch: pytest.MonkeyPatch) -> None:
    from neuron_signatures.models import specs as models

    monkeypatch.setattr(models, "cpu_has_native_bf16", lambda: False)
    assert models.resolve_model_dtype("auto", "cpu") == "fp32"
    assert models.resolve_model_dtype("auto", "cuda") == "bf16"
    assert models.resolve_model_dtype("fp16", "cpu") == "fp16"
    monkeypatch.setattr(models, "cpu_has_native_bf16", lambda: True)
    assert models.resolve_model_dtype("auto", "cpu") == "bf16"


def test_check_finite_names_prompt_layer_position(
    tiny_pair: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from neuron_signatures import capture, models
    from neuron_signatures.errors import NonFiniteActivationError

    lm, _ = tiny_pair
    real = models.capture_hook_post

    def poisoned(*args: Any, sink: Any, **kw: Any) -> dict[int, torch.Tensor]:
        def poison(layer: int, acts: torch.Tensor) -> None:
            if layer == 1:
                acts = acts.clone()
                acts[0, 2, 5] = float("nan")
            sink(layer, acts)

        return real(*args, sink=poison, **kw)

    monkeypatch.setattr(models, "capture_hook_post", poisoned)
    cfg = DumpConfig(
        prompts=PROMPTS,
        out_dir=tmp_path / "nan",
        model_dtype="fp32",
        progress=False,
        batch_size=1,
        check_finite=True,
    )
    with pytest.raises(NonFiniteActivationError, match=r"prompt 'short', layer 1, position 2"):
        capture.run_dump(cfg, load=lambda _t: lm)
    assert not json.loads((tmp_path / "nan" / "manifest.json").read_text())["complete"]


@pytest.mark.parametrize("save_dtype", ["bf16", "fp32"])
def test_shard_files_are_the_same_bytes_on_every_write_path(
    tiny_pair: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, save_dtype: str
) -> None:
    """The shard images written with O_DIRECT, the same through the page cache, and the tensors
    of ``capture_shard`` serialised the old way (no image, no sink) are byte-identical."""
    from neuron_signatures import capture
    from neuron_signatures.store.atomic import DIRECT_IO_ENV
    from neuron_signatures.store.writer import safetensors_chunks

    lm, _ = tiny_pair
    runs = {}
    for name, env in (("direct", None), ("page cache", "1")):
        if env:
            monkeypatch.setenv(DIRECT_IO_ENV, env)
        cfg = DumpConfig(
            prompts=PROMPTS, out_dir=tmp_path / name, model_dtype="fp32", save_dtype=save_dtype,
            progress=False, batch_size=2,
        )  # fmt: skip
        runs[name] = run_dump(cfg, load=lambda _tok: lm)
    manifests = [json.loads((r / "manifest.json").read_text()) for r in runs.values()]
    assert manifests[0]["shards"] == manifests[1]["shards"] and len(manifests[0]["shards"]) > 1
    save = {"bf16": torch.bfloat16, "fp32": torch.float32}[save_dtype]
    for s, shard in enumerate(manifests[0]["shards"]):
        recs = [p for p in manifests[0]["prompts"] if p["shard"] == s]
        recs.sort(key=lambda p: p["shard_offset"])
        old = capture.capture_shard(lm, recs, manifests[0]["layers"], save, False, 0)
        want = b"".join(map(bytes, safetensors_chunks(old)))
        for r in runs.values():
            assert (r / "activations" / shard["file"]).read_bytes() == want
