"""Run folders: resume after a kill, pt export, prototype runs, verify, reader API."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from neuron_signatures.capture import DumpConfig, run_dump
from neuron_signatures.errors import (
    BadArgumentError,
    IncompleteRunError,
    RunExistsError,
    RunFormatError,
    RunLockedError,
)
from neuron_signatures.prompts import Prompt
from neuron_signatures.store import open_run, open_writer, verify_run
from neuron_signatures.store.build import write_run
from tests.conftest import PROMPT_TEXTS

PROMPTS = [Prompt(k, v) for k, v in PROMPT_TEXTS.items()]


class Killed(Exception):
    pass


def cfg(out: Path, **kw: Any) -> DumpConfig:
    return DumpConfig(
        prompts=PROMPTS,
        out_dir=out,
        model_dtype="fp32",
        save_dtype="bf16",
        progress=False,
        batch_size=1,
        **kw,
    )


def kill_after(n: int) -> Any:
    def on_batch(shard: int) -> None:
        if shard == n:
            raise Killed

    return on_batch


def shard_bytes(run_dir: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted((run_dir / "activations").iterdir())}


def test_resume_after_kill_equals_uninterrupted(tiny_pair: Any, tmp_path: Path) -> None:
    lm, _ = tiny_pair
    full = run_dump(cfg(tmp_path / "full"), load=lambda _t: lm)
    part = tmp_path / "part"
    with pytest.raises(Killed):
        run_dump(cfg(part), load=lambda _t: lm, on_batch=kill_after(1))
    with pytest.raises(IncompleteRunError):
        open_run(part)
    assert not json.loads((part / "manifest.json").read_text())["complete"]
    with pytest.raises(RunExistsError):
        run_dump(cfg(part), load=lambda _t: lm)
    # A half-written temporary file from the kill must not matter.
    (part / "activations" / ".shard_00002.safetensors.x.tmp").write_bytes(b"junk")
    with open(part / "activations" / "progress.jsonl", "a") as f:
        f.write('{"shard": 2, "by')  # a torn last line
    written: list[int] = []
    run_dump(cfg(part, resume=True), load=lambda _t: lm, on_batch=written.append)
    assert written == [2, 3]  # shards 0 and 1 were kept
    assert {k: v for k, v in shard_bytes(part).items() if not k.startswith(".")} == shard_bytes(
        full
    )
    a, b = open_run(part), open_run(full)
    for p in a.prompts:
        np.testing.assert_array_equal(a.prompt_acts(p.index), b.prompt_acts(p.index))
    assert verify_run(part).ok


def test_resume_refuses_other_inputs(tiny_pair: Any, tmp_path: Path) -> None:
    lm, _ = tiny_pair
    out = tmp_path / "r"
    with pytest.raises(Killed):
        run_dump(cfg(out), load=lambda _t: lm, on_batch=kill_after(0))
    other = DumpConfig(
        prompts=PROMPTS[:2],
        out_dir=out,
        model_dtype="fp32",
        save_dtype="bf16",
        progress=False,
        batch_size=1,
        resume=True,
    )
    with pytest.raises(RunExistsError, match=r"the prompts differ \(run: 4 prompts, now: 2\)"):
        run_dump(other, load=lambda _t: lm)


def test_overwrite_refuses_non_run_folder(tiny_pair: Any, tmp_path: Path) -> None:
    lm, _ = tiny_pair
    out = tmp_path / "notes"
    out.mkdir()
    (out / "important.txt").write_text("keep me")
    with pytest.raises(RunExistsError, match="not a run folder"):
        run_dump(cfg(out, overwrite=True), load=lambda _t: lm)
    assert (out / "important.txt").read_text() == "keep me"


def test_lock_stops_second_writer(tmp_path: Path) -> None:
    manifest = {"prompts": [], "shards": [], "fingerprint": "x"}
    with open_writer(tmp_path / "L", manifest), pytest.raises(RunLockedError):
        open_writer(tmp_path / "L", manifest, resume=True)


def test_pt_export_matches_shards(tiny_pair: Any, tmp_path: Path) -> None:
    lm, _ = tiny_pair
    out = run_dump(cfg(tmp_path / "pt", save_format="pt"), load=lambda _t: lm)
    run = open_run(out)
    tensors = torch.load(out / "activations.pt", weights_only=True)
    assert set(tensors) == {p.probe_id for p in run.prompts}
    for p in run.prompts:
        t = tensors[p.probe_id]
        assert t.dtype == torch.bfloat16
        assert tuple(t.shape) == tuple(run.manifest["prompts"][p.index]["activation_tensor_shape"])
        np.testing.assert_array_equal(t.float().numpy(), run.prompt_acts(p.index))


def make_prototype_run(folder: Path, n_prompts: int = 3) -> dict[str, torch.Tensor]:
    """A run folder as the prototype wrote it: manifest (format 1) + activations.pt."""
    folder.mkdir(parents=True)
    rng = np.random.default_rng(1)
    tensors, prompts = {}, []
    for i in range(n_prompts):
        seq = 3 + i
        tensors[f"probe_{i}_X"] = torch.from_numpy(
            rng.standard_normal((2, seq, 5)).astype("f4")
        ).to(torch.bfloat16)
        prompts.append(
            {
                "probe_id": f"probe_{i}_X",
                "text": "t",
                "token_ids": list(range(seq)),
                "tokens_ascii": ["<bos>"] + [f" w{j}" for j in range(1, seq)],
                "seq_len": seq,
                "activation_tensor_key": f"probe_{i}_X",
                "activation_tensor_shape": [2, seq, 5],
                "activation_tensor_dtype": "torch.bfloat16",
            }
        )
    torch.save(tensors, folder / "activations.pt")
    (folder / "manifest.json").write_text(
        json.dumps(
            {
                "format_version": 1,
                "created_at_utc": "2025-01-01T00:00:00Z",
                "model_name": "google/gemma-2-2b",
                "hook_name": "blocks.{l}.mlp.hook_post",
                "n_layers": 2,
                "d_mlp": 5,
                "run_device": "cuda",
                "model_dtype": "bf16",
                "save_dtype": "bf16",
                "prepend_bos": True,
                "activations_file": "activations.pt",
                "prompts": prompts,
            }
        )
    )
    return tensors


def test_prototype_run_opens(tmp_path: Path) -> None:
    tensors = make_prototype_run(tmp_path / "proto")
    run = open_run(tmp_path / "proto")
    assert run.n_prompts == 3 and run.layers == [0, 1]
    np.testing.assert_array_equal(
        run.prompt_acts("probe_1_X"), tensors["probe_1_X"].float().numpy()
    )
    col = run.neuron(1, 4)
    assert [c.shape[0] for c in col] == [3, 4, 5]
    np.testing.assert_array_equal(col[2], tensors["probe_2_X"][1, :, 4].float().numpy())
    assert verify_run(tmp_path / "proto").ok


def test_prototype_run_refuses_pickled_objects(tmp_path: Path) -> None:
    make_prototype_run(tmp_path / "evil")
    torch.save(
        {"probe_0_X": torch.zeros(2, 3, 5), "obj": Killed}, tmp_path / "evil" / "activations.pt"
    )
    with pytest.raises(RunFormatError, match="refusing to unpickle"):
        open_run(tmp_path / "evil").prompt_acts(0)


def synthetic(tmp_path: Path, dtype: str = "fp32") -> tuple[Any, list[np.ndarray]]:
    rng = np.random.default_rng(0)
    prompts, acts = [], []
    for i in range(11):
        n = int(rng.integers(2, 9))
        prompts.append(
            {
                "probe_id": f"p{i}",
                "text": f"text {i}",
                "token_ids": list(range(n)),
                "tokens": ["<bos>"] + [f"\u2581w{j}" for j in range(1, n)],
            }
        )
        acts.append(rng.standard_normal((3, n, 7)).astype(np.float32))
    return write_run(tmp_path / "syn", prompts, acts, save_dtype=dtype, prompts_per_shard=4), acts


def test_reader_api(tmp_path: Path) -> None:
    run, acts = synthetic(tmp_path)
    assert run.n_tokens == sum(a.shape[1] for a in acts)
    assert run.prompt_index("p3") == 3 and run.prompt_index(-1) == 10 and run.prompt_index("4") == 4
    np.testing.assert_array_equal(run.prompt_neuron("p5", 2, 6), acts[5][2, :, 6])
    cols = run.neuron(1, 3)
    for i, c in enumerate(cols):
        np.testing.assert_array_equal(c, acts[i][1, :, 3])
    seen = []
    for block in run.iter_blocks():
        a = block.acts(2)
        for pi, s, n in zip(block.prompt_indices, block.starts, block.lengths, strict=True):
            np.testing.assert_array_equal(a[s : s + n], acts[pi][2])
            seen.append(pi)
    assert sorted(seen) == list(range(11))
    assert run.prompts[0].tokens_ascii[1] == " w1"
    with pytest.raises(BadArgumentError):
        run.prompt_index("nope")
    with pytest.raises(BadArgumentError):
        run.prompt_neuron(0, 5, 0)
    with pytest.raises(BadArgumentError):
        run.prompt_neuron(0, 0, 7)


def test_verify_detects_corruption(tmp_path: Path) -> None:
    run, _ = synthetic(tmp_path, "bf16")
    assert verify_run(run.run_dir).ok
    copy = tmp_path / "copy"
    shutil.copytree(run.run_dir, copy)
    shard = sorted((copy / "activations").glob("*.safetensors"))[1]
    data = bytearray(shard.read_bytes())
    data[-3] ^= 0xFF
    shard.write_bytes(bytes(data))
    report = verify_run(copy)
    assert not report.ok and "sha256" in report.problems[0]
    shard.unlink()
    assert "missing" in verify_run(copy).problems[0]


def test_open_run_errors(tmp_path: Path) -> None:
    with pytest.raises(RunFormatError, match="does not exist"):
        open_run(tmp_path / "nothing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(RunFormatError, match="no manifest"):
        open_run(tmp_path / "empty")
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "manifest.json").write_text("{not json")
    with pytest.raises(RunFormatError, match="unreadable"):
        open_run(tmp_path / "bad")
    (tmp_path / "future").mkdir()
    (tmp_path / "future" / "manifest.json").write_text(
        json.dumps({"format_version": 99, "prompts": []})
    )
    with pytest.raises(RunFormatError, match="format_version 99"):
        open_run(tmp_path / "future")


def test_shards_are_standard_safetensors(tmp_path: Path) -> None:
    from safetensors.torch import load_file

    run, _ = synthetic(tmp_path, "bf16")
    shard = sorted((run.run_dir / "activations").glob("*.safetensors"))[0]
    loaded = load_file(shard)
    assert sorted(loaded) == ["layer_0", "layer_1", "layer_2"]
    block = next(run.iter_blocks())
    for layer in range(3):
        assert loaded[f"layer_{layer}"].dtype == torch.bfloat16
        np.testing.assert_array_equal(loaded[f"layer_{layer}"].float().numpy(), block.acts(layer))
