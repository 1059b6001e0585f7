"""The batch loop of a build: capture, reduce on the device, checkpoint, finish.

Each batch's windows are right-padded with an attention mask (rows in window order), run through
:func:`neuron_signatures.models.capture_hook_post` (the body stops after the last wanted layer)
and folded into each layer's state where the activations are. Every ``checkpoint_every``
forwarded tokens the states go to ``checkpoint/`` with the next batch index; a resumed build
starts there and, batches being fixed by the plan, ends with the same bytes.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..capture import TokenBar
from . import store
from .plan import reduce_params
from .reduce import (
    batch_tokens,
    from_disk,
    kernel_available,
    new_state,
    to_disk,
    update,
    update_kernel,
)
from .windows import WindowPlan

log = logging.getLogger(__name__)
REDUCE_THREADS = 1


def reducer(device: str) -> Callable[..., None]:
    """The fold of one batch into a layer state: on a CPU the compiled pass of :mod:`.kernel`
    (where numba imports), else the torch ops of :func:`.reduce.update` (GPU, or no numba)."""
    if device == "cpu" and kernel_available():
        return update_kernel
    return update


@contextlib.contextmanager
def _reduce_threads(device: str, fold: Callable[..., None]) -> Iterator[None]:
    """One intra-op thread for the torch reduction on a CPU: it is many small ops, and with two
    threads each waits for a shared core (a 262k-element sort: 186 ms with 2 threads on a busy
    2-core machine, 5 ms with 1; the whole reduction ran 2.5x faster). The compiled pass splits
    neurons over all threads itself."""
    if device.startswith("cuda") or fold is not update:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(REDUCE_THREADS)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def batch_inputs(
    tokens: np.ndarray, lengths: np.ndarray, wins: np.ndarray, pad: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-padded ``[B, longest]`` token ids of windows ``wins`` and their attention mask."""
    n = lengths[wins].astype(np.int64)
    width = int(n.max())
    ids = torch.from_numpy(tokens[wins, :width].astype(np.int64))
    ids[ids < 0] = pad
    mask = torch.from_numpy((np.arange(width)[None, :] < n[:, None]).astype(np.int64))
    return ids, mask


def run_batches(
    cfg: Any,
    root: Path,
    lm: Any,
    plan: WindowPlan,
    batches: list[list[int]],
    manifest: dict[str, Any],
    span: tuple[int, int],
    on_batch: Callable[[int], None] | None,
) -> dict[str, Any]:
    """Reduce batches ``span`` of the plan into ``root``; returns timings for ``build.json``."""
    from ..models import capture_hook_post

    p = reduce_params(manifest)
    layers: list[int] = manifest["layers"]
    dev = lm.device
    lo, hi = span
    start, states = lo, {layer: new_state(p, dev) for layer in layers}
    ckpt = store.load_checkpoint(root, layers) if cfg.resume else None
    if ckpt is not None:
        start = int(ckpt[0]["next_batch"])
        states = {layer: from_disk(t, p, dev) for layer, t in ckpt[1].items()}
        log.info("resuming %s at batch %d of %d..%d", root, start, lo, hi)
    fold = reducer(dev)
    pad = lm.tokenizer.pad_token_id if lm.tokenizer.pad_token_id is not None else 0
    bar = TokenBar(
        cfg.progress, sum(int(plan.lengths[batches[b]].sum()) for b in range(lo, hi)), "atlas"
    )
    bar.update(sum(int(plan.lengths[batches[b]].sum()) for b in range(lo, start)))
    t_fwd = t_red = 0.0
    since = 0
    for b in range(start, hi):
        wins = np.asarray(batches[b], dtype=np.int64)
        lengths = plan.lengths[wins].astype(np.int64)
        ids, mask = batch_inputs(plan.tokens, plan.lengths, wins, pad)
        t = time.perf_counter()
        got = capture_hook_post(lm, ids.to(dev), mask.to(dev), layers)
        _sync(dev)
        t_fwd += time.perf_counter() - t
        t = time.perf_counter()
        bt = batch_tokens(wins, lengths, p.ctx_len, cfg.include_bos, p.seed, dev)
        with _reduce_threads(dev, fold):
            for layer in layers:
                fold(states[layer], p, got[layer], bt)
        del got
        _sync(dev)
        t_red += time.perf_counter() - t
        since += int(lengths.sum())
        bar.update(int(lengths.sum()))
        if since >= cfg.checkpoint_every and b + 1 < hi:
            cpu = {layer: to_disk(states[layer], p) for layer in layers}
            store.save_checkpoint(root, b + 1, cpu, {"next_batch": b + 1})
            since = 0
        if on_batch:
            on_batch(b)
    bar.close()
    t = time.perf_counter()
    tokens_seen = int(states[layers[0]]["n"][0])
    for layer in layers:
        store.save_tensors(store.layer_file(root, layer), to_disk(states[layer], p))
    del states
    t_save = time.perf_counter() - t
    t = time.perf_counter()
    if cfg.write_scores_k:
        from .scores import write_score_tensors

        store.save_tensors(
            root / store.WRITE_SCORES, write_score_tensors(lm, layers, cfg.write_scores_k)
        )
    t_scores = time.perf_counter() - t
    n_windows = sum(len(batches[b]) for b in range(lo, hi))
    n_fwd = sum(int(plan.lengths[batches[b]].sum()) for b in range(lo, hi))
    manifest = {**manifest, "complete": (lo, hi) == (0, len(batches))}
    manifest["progress"] = {
        "batch_ranges": [[lo, hi]],
        "windows_done": n_windows,
        "tokens_seen": tokens_seen,
        "tokens_forwarded": n_fwd,
    }
    store.write_json(root / store.MANIFEST, manifest)
    shutil.rmtree(root / store.CHECKPOINT, ignore_errors=True)
    return {
        "device": dev,
        "resumed_at_batch": start if start != lo else None,
        "batches": [lo, hi],
        "tokens_forwarded_this_process": n_fwd
        - sum(int(plan.lengths[batches[b]].sum()) for b in range(lo, start)),
        "reducer": "numba kernel" if fold is update_kernel else "torch ops",
        "forward_s": round(t_fwd, 3),
        "reduce_s": round(t_red, 3),
        "save_s": round(t_save, 3),
        "write_scores_s": round(t_scores, 3),
        "checkpoint_every": cfg.checkpoint_every,
    }
