"""Plan a dump (:class:`DumpConfig`) from what is known: before the model loads, then from the
loaded model.

Before the load the model's shape comes from its ``config.json`` on disk or the table of known
models (:func:`~neuron_signatures.estimate.known_shape`), so ``--layers``, the resume settings and
free disk space are checked in a second; only an unknown model waits for the load.
"""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import BadArgumentError, DiskSpaceError
from .estimate import known_shape
from .prompts import Prompt
from .store.build import library_versions, plan_manifest
from .store.manifest import DTYPE_BYTES, FORMAT_VERSION

ACT_BUDGET_BYTES = 512 * 2**20  # captured fp32 activations per batch when batch size is automatic
MAX_AUTO_BATCH = 64


@dataclass
class DumpConfig:
    """Everything a dump needs; the CLI fills it from flags.

    Attributes:
        prompts: the prompts, in the order the run lists them.
        out_dir: the run folder to write.
        model_name: model spec (see :mod:`neuron_signatures.models`).
        device: ``cpu`` / ``cuda`` / ``cuda:N``; ``None`` picks cuda when available.
        model_dtype: compute dtype (auto | bf16 | fp16 | fp32); ``auto`` is bf16 on a GPU or a CPU
            with native bf16, else fp32; fp32 is the exact reference mode.
        save_dtype: stored dtype (bf16 | fp16 | fp32).
        layers: model layers to capture (``None`` = all).
        batch_size: prompts per batch; ``None`` = automatic from ``max_batch_tokens``.
        max_batch_tokens: padded tokens per batch; ``None`` = from a 512 MiB activation budget.
        max_seq_len: longest prompt accepted, in tokens (BOS included).
        truncate: cut longer prompts to ``max_seq_len`` instead of refusing them.
        prepend_bos: put exactly one BOS in front of each prompt.
        check_finite: stop at the first NaN/Inf, naming prompt, layer and position.
        save_format: ``safetensors`` (always written) or ``pt`` (also write ``activations.pt``).
        resume / overwrite: how to treat an existing run folder.
        progress: show a progress bar.
    """

    prompts: list[Prompt]
    out_dir: Path
    model_name: str = "gemma3-270m"
    device: str | None = None
    model_dtype: str = "auto"
    save_dtype: str = "bf16"
    layers: list[int] | None = None
    batch_size: int | None = None
    max_batch_tokens: int | None = None
    max_seq_len: int = 2048
    truncate: bool = False
    prepend_bos: bool = True
    check_finite: bool = False
    save_format: str = "safetensors"
    resume: bool = False
    overwrite: bool = False
    progress: bool = True
    extra: dict[str, Any] = field(default_factory=dict)


def auto_batch_tokens(n_layers: int, d_mlp: int) -> int:
    """Padded tokens per batch so captured fp32 activations stay near 512 MiB."""
    return max(64, min(8192, ACT_BUDGET_BYTES // (n_layers * d_mlp * 4)))


def plan_batches(
    lengths: Sequence[int], *, batch_size: int | None, max_batch_tokens: int
) -> list[list[int]]:
    """Group prompt indices into batches of similar length (sorted by length, stable).

    A batch grows while ``(n + 1) * longest <= max_batch_tokens`` (always at least one prompt)
    and, when ``batch_size`` is given, while it has fewer than ``batch_size`` prompts.
    """
    order = sorted(range(len(lengths)), key=lambda i: (lengths[i], i))
    cap = batch_size or MAX_AUTO_BATCH
    batches: list[list[int]] = []
    cur: list[int] = []
    for i in order:
        longest = max(lengths[i], max((lengths[j] for j in cur), default=0))
        if cur and (
            len(cur) >= cap or (batch_size is None and (len(cur) + 1) * longest > max_batch_tokens)
        ):
            batches.append(cur)
            cur = []
        cur.append(i)
    if cur:
        batches.append(cur)
    return batches


def check_disk(
    out_dir: Path, n_tokens: int, n_layers: int, d_mlp: int, save_dtype: str, with_pt: bool
) -> int:
    """Bytes the run needs; raises :class:`DiskSpaceError` when the disk cannot hold them."""
    need = n_tokens * n_layers * d_mlp * DTYPE_BYTES[save_dtype] * (2 if with_pt else 1)
    check_disk_bytes(out_dir, need)
    return need


def check_disk_bytes(out_dir: Path, need: int) -> None:
    """Raise :class:`DiskSpaceError` when ``out_dir``'s disk has less than ``need`` bytes free."""
    probe = out_dir
    while not probe.exists():
        probe = probe.parent
    free = shutil.disk_usage(probe).free
    if need > free:
        raise DiskSpaceError(
            f"the run needs {need / 2**30:.2f} GiB more but {probe} has {free / 2**30:.2f} GiB "
            "free: free space, use --save_dtype bf16, fewer --layers or another --out_dir"
        )


@dataclass
class DumpPlan:
    """The run as planned from what is known: before the load ``shape`` may be None, and then
    ``manifest`` holds only the settings known without the model."""

    manifest: dict[str, Any]
    shape: tuple[int, int] | None
    layers: list[int]
    batches: list[list[int]]


def plan_dump(cfg: DumpConfig, records: list[dict], lm: Any) -> DumpPlan:
    """Plan layers, batches and manifest from the loaded model, or before the load from the
    model's config on disk / the known-model table (``--layers`` is checked here)."""
    from . import models

    if lm is not None:
        name, device, dtype = lm.name, lm.device, lm.dtype
        shape: tuple[int, int] | None = (lm.n_layers, lm.d_mlp)
    else:
        name = models.resolve_model_spec(cfg.model_name).name
        device = cfg.device or models.default_device()
        dtype = models.resolve_model_dtype(cfg.model_dtype, device)
        shape = known_shape(cfg.model_name)
    layers = check_layers(cfg.layers, shape[0] if shape else None)
    if shape is None:
        return DumpPlan(settings_only(cfg, records, name, device, dtype, layers), None, layers, [])
    lengths = [len(r["token_ids"]) for r in records]
    budget = cfg.max_batch_tokens or auto_batch_tokens(len(layers), shape[1])
    batches = plan_batches(lengths, batch_size=cfg.batch_size, max_batch_tokens=budget)
    extra: dict[str, Any] = {"model": lm.source} if lm is not None else {}
    manifest = plan_manifest(
        prompts=records,
        batches=batches,
        model_name=name,
        n_layers=shape[0],
        d_mlp=shape[1],
        layers=layers,
        save_dtype=cfg.save_dtype,
        model_dtype=dtype,
        run_device=device,
        prepend_bos=cfg.prepend_bos,
        extra={
            **extra,
            "model_dtype_requested": cfg.model_dtype,
            "capture": {
                **capture_settings(cfg),
                "max_batch_tokens": budget,
                "sorted_by_length": True,
                "padding_side": "right",
                "logits_computed": False,
                "n_batches": len(batches),
            },
            **cfg.extra,
        },
    )
    return DumpPlan(manifest, shape, layers, batches)


def capture_settings(cfg: DumpConfig) -> dict[str, Any]:
    return {"batch_size": cfg.batch_size, "max_seq_len": cfg.max_seq_len, "truncate": cfg.truncate}


def settings_only(
    cfg: DumpConfig, records: list[dict], name: str, device: str, dtype: str, layers: list[int]
) -> dict[str, Any]:
    """The settings a resume must match that are known before an unknown model loads."""
    out: dict[str, Any] = {
        "format_version": FORMAT_VERSION,
        "model_name": name,
        "save_dtype": cfg.save_dtype,
        "model_dtype": dtype,
        "prepend_bos": cfg.prepend_bos,
        "run_device": device,
        "versions": library_versions(),
        "capture": capture_settings(cfg),
        "prompts": [{k: r[k] for k in ("probe_id", "text", "token_ids")} for r in records],
    }
    if layers:
        out["layers"] = layers
    return out


def check_layers(requested: list[int] | None, n_layers: int | None) -> list[int]:
    """Sorted unique layers; all of them when ``requested`` is None ([] while n_layers is
    unknown). Raises BadArgumentError for an empty list or a layer the model does not have."""
    if requested is None:
        return list(range(n_layers)) if n_layers is not None else []
    layers = sorted(set(requested))
    if not layers:
        raise BadArgumentError("--layers is empty: give layers like 0,3,5-7, or omit it for all")
    bad = [layer for layer in layers if n_layers is not None and not 0 <= layer < n_layers]
    if bad:
        raise BadArgumentError(
            f"--layers {','.join(map(str, bad))} out of range: this model has layers "
            f"0..{n_layers - 1 if n_layers else 0}"
        )
    return layers


def check_space(cfg: DumpConfig, kept: int, n_tok: int, plan: DumpPlan) -> None:
    """Free disk for what is left to write (``kept`` bytes of shards are already on disk)."""
    assert plan.shape is not None
    need = n_tok * len(plan.layers) * plan.shape[1] * DTYPE_BYTES[cfg.save_dtype]
    need = need * (2 if cfg.save_format == "pt" else 1) - kept
    check_disk_bytes(cfg.out_dir, need)
