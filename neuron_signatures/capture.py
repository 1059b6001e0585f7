"""Capture: prompts → tokens → length-sorted batches → ``hook_post`` → store shards.

1. Tokenise every prompt with exactly one BOS (unless disabled) and check lengths.
2. Sort prompts by token length and cut batches under a token budget (padding on a probe set
   drops from 33% to 7% of tokens); pad on the right with an attention mask, so every real token
   keeps positions ``0..len-1`` and attends only to real tokens: padded equals unpadded.
3. Run the body to the last wanted layer (never the unembed), slice each prompt's own rows,
   cast to the save dtype and hand the batch to the store writer as one shard.

Memory is bounded by one batch; a killed dump resumes at the first shard not on disk.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .dump_plan import (
    DumpConfig,
    DumpPlan,
    auto_batch_tokens,
    check_disk,
    check_space,
    plan_batches,
    plan_dump,
)
from .errors import BadArgumentError, BadPromptsError, NonFiniteActivationError
from .prompts import Prompt
from .store import RunClaim, RunWriter
from .store.legacy import export_legacy_pt
from .store.manifest import DTYPE_BYTES
from .store.reader import open_run
from .store.shard_image import ShardBuffers, padded_size
from .token_bar import TokenBar

__all__ = [
    "DumpConfig",
    "DumpResult",
    "auto_batch_tokens",
    "check_disk",
    "dump",
    "plan_batches",
    "run_dump",
    "tokenize_prompts",
]

log = logging.getLogger(__name__)

PAUSE_ENV = "NEURON_SIGNATURES_PAUSE_AFTER_SHARDS"  # test hook, see _pause_hook


def tokenize_prompts(
    tokenizer: Any,
    prompts: Sequence[Prompt],
    *,
    prepend_bos: bool,
    max_seq_len: int,
    truncate: bool,
) -> list[dict[str, Any]]:
    """Token ids and pieces per prompt, with exactly one BOS when ``prepend_bos``.

    The tokenizer is called without special tokens and BOS is added here, so a tokenizer that
    adds its own BOS, or a text that starts with the BOS string, never yields two.
    """
    bos = tokenizer.bos_token_id
    if prepend_bos and bos is None:
        raise BadArgumentError("this tokenizer has no BOS token: pass --no_prepend_bos")
    out = []
    for p in prompts:
        ids = list(tokenizer(p.text, add_special_tokens=False).input_ids)
        while prepend_bos and ids and ids[0] == bos:
            ids.pop(0)
        if prepend_bos:
            ids = [bos, *ids]
        if not ids:
            raise BadPromptsError(f"prompt {p.id!r} tokenises to nothing: give it some text")
        if len(ids) > max_seq_len:
            if not truncate:
                raise BadPromptsError(
                    f"prompt {p.id!r} is {len(ids)} tokens, longer than --max_seq_len "
                    f"{max_seq_len}: raise --max_seq_len or pass --truncate to cut it"
                )
            ids = ids[:max_seq_len]
        rec: dict[str, Any] = {
            "probe_id": p.id,
            "text": p.text,
            "token_ids": ids,
            "tokens": tokenizer.convert_ids_to_tokens(ids),
        }
        if p.concept is not None:
            rec["concept"] = p.concept
        if p.concept_type is not None:
            rec["concept_type"] = p.concept_type
        out.append(rec)
    return out


@dataclass
class DumpResult:
    """What :func:`dump` did.

    Attributes:
        run_dir: the run folder.
        n_prompts, n_tokens: the run's size.
        shards_written: shards computed by this call.
        shards_kept: shards a resume kept (their recorded sha256 matched).
        already_complete: ``--resume`` found the run finished and intact: nothing was loaded or
            written.
        notes: what the user should know (temporary files removed, bad shards recomputed).
    """

    run_dir: Path
    n_prompts: int
    n_tokens: int
    shards_written: int = 0
    shards_kept: int = 0
    already_complete: bool = False
    notes: list[str] = field(default_factory=list)


def run_dump(
    cfg: DumpConfig,
    *,
    load: Callable[..., Any] | None = None,
    on_batch: Callable[[int], None] | None = None,
) -> Path:
    """Dump ``cfg.prompts`` into ``cfg.out_dir``; returns the run folder (see :func:`dump`)."""
    return dump(cfg, load=load, on_batch=on_batch).run_dir


def dump(
    cfg: DumpConfig,
    *,
    load: Callable[..., Any] | None = None,
    on_batch: Callable[[int], None] | None = None,
    capture_all: Callable[..., int] | None = None,
) -> DumpResult:
    """Dump ``cfg.prompts`` into ``cfg.out_dir``.

    Everything that can fail without the model fails before it loads: flags, the folder and its
    lock, the prompts, ``--layers`` and the resume settings (when the model's shape is on disk or
    known), free disk space. A ``--resume`` of a finished, intact run does nothing.

    Args:
        load: ``load(tokenizer) -> LoadedModel`` override (tests pass an in-memory model).
        on_batch: called with the shard index after each shard is written (tests use it to
            simulate a kill).
        capture_all: replaces the shard loop (same arguments as :func:`_capture_all`; the Ray
            engine computes the shards on its workers).
    """
    from . import models

    _check_config(cfg)
    on_batch = _pause_hook(on_batch)
    t0 = time.perf_counter()
    with RunClaim.take(cfg.out_dir, resume=cfg.resume, overwrite=cfg.overwrite) as claim:
        lm = load(None) if load else None
        tokenizer = lm.tokenizer if lm else models.load_tokenizer(cfg.model_name)
        records = tokenize_prompts(
            tokenizer,
            cfg.prompts,
            prepend_bos=cfg.prepend_bos,
            max_seq_len=cfg.max_seq_len,
            truncate=cfg.truncate,
        )
        n_tok = sum(len(r["token_ids"]) for r in records)
        result = DumpResult(cfg.out_dir, len(records), n_tok, notes=claim.notes)
        plan = plan_dump(cfg, records, lm)
        if claim.check(plan.manifest):
            result.already_complete = True
            return result
        lm, plan = _load(cfg, claim, records, tokenizer, lm, plan)
        bar = _Bar(cfg.progress, n_tok, len(records))
        with claim.start(plan.manifest) as w:
            result.shards_kept = sum(w.shard_done(s) for s in range(len(plan.batches)))
            result.shards_written = (capture_all or _capture_all)(
                lm, w, records, plan.batches, plan.layers, cfg, bar, on_batch
            )
            bar.close()
            if cfg.save_format == "pt":
                export_legacy_pt(open_run(cfg.out_dir, allow_incomplete=True), cfg.save_dtype)
                w.manifest["legacy_activations_file"] = "activations.pt"
            w.finish(dump_seconds=round(time.perf_counter() - t0, 3))
    log.info("dumped %d prompts (%d tokens) into %s", len(records), n_tok, cfg.out_dir)
    return result


def _load(
    cfg: DumpConfig, claim: RunClaim, records: list[dict], tokenizer: Any, lm: Any, plan: DumpPlan
) -> tuple[Any, DumpPlan]:
    """Check free disk space (before the load when the model's shape is known), load the model
    and plan again from it (the plan then checks ``--layers`` if it could not before)."""
    from . import models

    kept = sum(size for size, _ in claim.kept_shards().values())
    n_tok = sum(len(r["token_ids"]) for r in records)
    if plan.shape is not None:
        check_space(cfg, kept, n_tok, plan)
    if lm is not None:
        return lm, plan
    lm = models.load_model(cfg.model_name, cfg.device, cfg.model_dtype, tokenizer=tokenizer)
    checked, plan = plan.shape is not None, plan_dump(cfg, records, lm)
    if not checked:
        check_space(cfg, kept, n_tok, plan)
    return lm, plan


def _check_config(cfg: DumpConfig) -> None:
    if cfg.save_dtype not in DTYPE_BYTES or cfg.model_dtype not in (*DTYPE_BYTES, "auto"):
        raise BadArgumentError("dtypes must be one of bf16, fp16, fp32")
    if cfg.resume and cfg.overwrite:
        raise BadArgumentError("--resume and --overwrite contradict each other: pick one")
    for flag in ("batch_size", "max_batch_tokens", "max_seq_len"):
        value = getattr(cfg, flag)
        if value is not None and value < 1:
            raise BadArgumentError(f"--{flag} must be a positive integer, got {value}")


def _pause_hook(on_batch: Callable[[int], None] | None) -> Callable[[int], None] | None:
    """Test hook: with ``$NEURON_SIGNATURES_PAUSE_AFTER_SHARDS=N`` the dump stops for good after
    writing N shards (its writer thread sleeps), so a test can ``kill -9`` it at a known point."""
    n = int(os.environ.get(PAUSE_ENV, "0") or 0)
    if n <= 0:
        return on_batch
    written = [0]

    def hook(shard: int) -> None:
        if on_batch:
            on_batch(shard)
        written[0] += 1
        if written[0] >= n:
            log.warning("%s=%d: pausing (waiting to be killed)", PAUSE_ENV, n)
            while True:
                time.sleep(60)

    return hook


def _capture_all(
    lm: Any,
    w: RunWriter,
    records: list[dict],
    batches: list[list[int]],
    layers: list[int],
    cfg: DumpConfig,
    bar: _Bar,
    on_batch: Callable[[int], None] | None,
) -> int:
    """Forward each batch not yet on disk and write it as one shard; returns how many.

    Each batch's rows are cast straight into the shard file's image (:mod:`.store.shard_image`);
    hashing and writing it (``O_DIRECT``) run on one background thread while the next batch
    computes; at most one shard is in flight, so memory stays bounded by two batches and two
    reused images, and an error in a write surfaces before the next one starts.
    """
    from . import models

    save = models.torch_dtype(cfg.save_dtype)
    pad = lm.tokenizer.pad_token_id if lm.tokenizer.pad_token_id is not None else 0
    lengths = [len(r["token_ids"]) for r in records]

    def write(s: int, tensors: dict[str, Any], n_tok: int, n_prompts: int) -> None:
        w.write_shard(s, tensors)
        bar.count(n_tok, n_prompts)
        if on_batch:
            on_batch(s)

    written = 0
    longest = max((sum(lengths[i] for i in b) for b in batches), default=0)
    shape = [longest, lm.d_mlp]
    buffers = ShardBuffers(padded_size({f"layer_{layer}": (save, shape) for layer in layers}))
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="shard-writer") as pool:
        pending: Future[None] | None = None
        for s, batch in enumerate(batches):
            n_tok = sum(lengths[i] for i in batch)
            if w.shard_done(s):
                bar.count(n_tok, len(batch))
                continue
            written += 1
            recs = [records[i] for i in batch]
            tensors = capture_shard(lm, recs, layers, save, cfg.check_finite, pad, buffers)
            if pending is not None:
                pending.result()
            pending = pool.submit(write, s, tensors, n_tok, len(batch))
        if pending is not None:
            pending.result()
    return written


def capture_shard(
    lm: Any,
    recs: list[dict],
    layers: list[int],
    save: Any,
    check_finite: bool,
    pad: int,
    into: ShardBuffers | None = None,
) -> Any:
    """One shard of the batch ``recs``: ``{"layer_<l>": [sum of their lengths, d_mlp]}`` CPU
    tensors of dtype ``save``, the prompts' own rows concatenated in batch order; with ``into``,
    a :class:`.store.shard_image.ShardImage` in its next buffer whose tensors are those (each
    row cast straight into its place in the file's bytes)."""
    import torch

    from . import models

    batch = list(range(len(recs)))
    lengths = [len(r["token_ids"]) for r in recs]
    ids, mask = _pad_batch(batch, recs, lengths, pad)
    names = {layer: f"layer_{layer}" for layer in layers}
    image = None
    if into is not None:
        shape = [sum(lengths), lm.d_mlp]
        image = into.image({names[layer]: (save, shape) for layer in layers})
    tensors: dict[str, Any] = {}

    def sink(layer: int, acts: Any) -> None:
        """Each layer as the forward reaches it: its rows cast into place, the fp32 let go."""
        parts = [acts[row, : lengths[row]] for row in batch]
        if check_finite:
            _check_finite(torch.cat(parts), layer, batch, recs, lengths)
        out = image.tensors[names[layer]] if image and acts.device.type == "cpu" else None
        tensors[names[layer]] = _pack(parts, save, out)

    models.capture_hook_post(lm, ids.to(lm.device), mask.to(lm.device), layers, sink=sink)
    if image is None:
        return {name: t.cpu() for name, t in tensors.items()}
    for name, t in tensors.items():  # off a CPU: one device-to-host copy per layer, at the end
        if t.data_ptr() != image.tensors[name].data_ptr():
            image.tensors[name].copy_(t)
    return image


def _pack(parts: list[Any], dtype: Any, out: Any = None) -> Any:
    """Concatenate ``[len_i, d_mlp]`` slices into one ``[sum len_i, d_mlp]`` tensor of ``dtype``
    in one pass (each slice is cast while copied): ``torch.cat`` then ``.to`` reads and writes the
    fp32 rows twice. Same bytes as ``cat(...).to(dtype)``. ``out``: the tensor to fill (on the
    slices' device; a view into a shard's file image), else a new one on their device.
    """
    import torch

    first = parts[0]
    rows = out
    if rows is None:
        n = sum(p.shape[0] for p in parts)
        rows = torch.empty((n, first.shape[1]), dtype=dtype, device=first.device)
    at = 0
    for p in parts:
        rows[at : at + p.shape[0]].copy_(p)
        at += p.shape[0]
    return rows


def _pad_batch(
    batch: list[int], records: list[dict], lengths: list[int], pad: int
) -> tuple[Any, Any]:
    """Right-padded ``[batch, longest]`` token ids and the matching attention mask."""
    import torch

    longest = max(lengths[i] for i in batch)
    ids = torch.full((len(batch), longest), pad, dtype=torch.long)
    mask = torch.zeros((len(batch), longest), dtype=torch.long)
    for row, i in enumerate(batch):
        ids[row, : lengths[i]] = torch.tensor(records[i]["token_ids"])
        mask[row, : lengths[i]] = 1
    return ids, mask


def _check_finite(
    rows: Any, layer: int, batch: list[int], records: list[dict], lengths: list[int]
) -> None:
    import torch

    bad = ~torch.isfinite(rows)
    if not bool(bad.any()):
        return
    first = int(bad.any(dim=1).nonzero()[0, 0])
    for i in batch:
        if first < lengths[i]:
            tok = records[i]["tokens"][first]
            raise NonFiniteActivationError(
                f"non-finite activation in prompt {records[i]['probe_id']!r}, layer {layer}, "
                f"position {first} (token {tok!r}): try --model_dtype fp32"
            )
        first -= lengths[i]


class _Bar(TokenBar):
    """The dump's bar: prompts done in the postfix."""

    def __init__(self, enabled: bool, total_tokens: int, total_prompts: int) -> None:
        super().__init__(enabled, total_tokens, "dump")
        self.prompts = 0
        self.total_prompts = total_prompts

    def count(self, tokens: int, prompts: int) -> None:
        self.prompts += prompts
        self.update(tokens, f"prompts {self.prompts}/{self.total_prompts}")
