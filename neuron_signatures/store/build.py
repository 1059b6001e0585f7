"""Plan a run's manifest (prompt → shard, offset) and write whole runs from arrays.

``plan_manifest`` is shared by the dump and by :func:`write_run`, which tests, benchmarks and
demos use to build run folders from hand-made activations without a model.
"""

from __future__ import annotations

import platform
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .. import __version__
from ..tokens import token_ascii
from .claim import open_writer
from .manifest import (
    ACTIVATIONS_DIR,
    FORMAT_VERSION,
    HOOK_TEMPLATE,
    TORCH_DTYPE_NAMES,
    utc_now,
)
from .reader import open_run
from .resume import fingerprint
from .run import Run
from .writer import shard_name


def plan_manifest(
    *,
    prompts: Sequence[dict[str, Any]],
    batches: Sequence[Sequence[int]],
    model_name: str,
    n_layers: int,
    d_mlp: int,
    layers: Sequence[int],
    save_dtype: str,
    model_dtype: str,
    run_device: str,
    prepend_bos: bool,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Build the manifest of a run before any activation exists.

    Args:
        prompts: dicts with ``probe_id, text, token_ids, tokens`` (optional ``concept``,
            ``concept_type``), in the order the user gave them.
        batches: prompt indices per shard, in writing order; each prompt appears once.
    """
    layers = list(layers)
    records: list[dict[str, Any]] = []
    located: dict[int, tuple[int, int]] = {}
    shards: list[dict[str, Any]] = []
    for s, batch in enumerate(batches):
        offset = 0
        for i in batch:
            located[i] = (s, offset)
            offset += len(prompts[i]["token_ids"])
        shards.append(
            {
                "file": shard_name(s),
                "n_prompts": len(batch),
                "n_tokens": offset,
                "bytes": None,
                "sha256": None,
            }
        )
    for i, p in enumerate(prompts):
        seq = len(p["token_ids"])
        shard, offset = located[i]
        rec: dict[str, Any] = {
            "probe_id": p["probe_id"],
            "text": p["text"],
            "token_ids": [int(t) for t in p["token_ids"]],
            "tokens_ascii": [token_ascii(t) for t in p["tokens"]],
            "tokens": list(p["tokens"]),
            "seq_len": seq,
            "activation_tensor_key": p["probe_id"],
            "activation_tensor_shape": [len(layers), seq, d_mlp],
            "activation_tensor_dtype": TORCH_DTYPE_NAMES[save_dtype],
            "shard": shard,
            "shard_offset": offset,
        }
        for key in ("concept", "concept_type"):
            if p.get(key) is not None:
                rec[key] = p[key]
        records.append(rec)
    manifest: dict[str, Any] = {
        "format_version": FORMAT_VERSION,
        "created_at_utc": utc_now(),
        "model_name": model_name,
        "hook_name": HOOK_TEMPLATE,
        "n_layers": n_layers,
        "d_mlp": d_mlp,
        "layers": layers,
        "run_device": run_device,
        "model_dtype": model_dtype,
        "save_dtype": save_dtype,
        "prepend_bos": prepend_bos,
        "activations_file": ACTIVATIONS_DIR,
        "n_prompts": len(records),
        "n_tokens": sum(r["seq_len"] for r in records),
        "prompts": records,
        "shards": shards,
        "versions": library_versions(),
        "status": "in_progress",
        "complete": False,
    }
    manifest.update(extra or {})
    manifest["fingerprint"] = fingerprint(manifest)
    return manifest


def library_versions() -> dict[str, str]:
    """Versions of the libraries that shape the numbers (without importing heavy ones)."""
    from importlib.metadata import PackageNotFoundError, version

    out = {"neuron_signatures": __version__, "python": platform.python_version()}
    for dist in ("torch", "transformers", "transformer-lens", "safetensors", "numpy", "gguf"):
        try:
            out[dist] = version(dist)
        except PackageNotFoundError:
            continue
    return out


def write_run(
    run_dir: str | Path,
    prompts: Sequence[dict[str, Any]],
    acts: Sequence[np.ndarray],
    *,
    model_name: str = "synthetic",
    layers: Sequence[int] | None = None,
    n_layers: int | None = None,
    save_dtype: str = "fp32",
    prompts_per_shard: int = 8,
    overwrite: bool = False,
) -> Run:
    """Write a complete run from per-prompt arrays ``[n_layers, seq, d_mlp]`` (no model).

    Used for hand-built test inputs, synthetic benchmark runs and UI demos.
    """
    import torch

    if len(prompts) != len(acts):
        raise ValueError("one activation array per prompt is needed")
    n_cap, _, d_mlp = acts[0].shape
    layers = list(range(n_cap)) if layers is None else list(layers)
    batches = [
        list(range(i, min(i + prompts_per_shard, len(prompts))))
        for i in range(0, len(prompts), prompts_per_shard)
    ]
    manifest = plan_manifest(
        prompts=prompts,
        batches=batches,
        model_name=model_name,
        n_layers=n_layers or (max(layers) + 1),
        d_mlp=d_mlp,
        layers=layers,
        save_dtype=save_dtype,
        model_dtype="fp32",
        run_device="cpu",
        prepend_bos=True,
    )
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}[save_dtype]
    with open_writer(run_dir, manifest, overwrite=overwrite) as writer:
        for s, batch in enumerate(batches):
            tensors = {
                f"layer_{layer}": torch.cat(
                    [torch.from_numpy(np.ascontiguousarray(acts[i][lp])) for i in batch]
                )
                .to(dtype)
                .contiguous()
                for lp, layer in enumerate(layers)
            }
            writer.write_shard(s, tensors)
        writer.finish()
    return open_run(run_dir)
