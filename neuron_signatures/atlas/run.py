"""The batch loop of a build: capture, reduce on the device, checkpoint, finish.

Each batch's windows are right-padded with an attention mask (rows in window order), run through
:func:`neuron_signatures.models.capture_hook_post` (the body stops after the last wanted layer)
and folded into each layer's state where the activations are. Every ``checkpoint_every``
forwarded tokens the states go to ``checkpoint/`` with the next batch index; a resumed build
starts there and, batches being fixed by the plan, ends with the same bytes.
"""

from __future__ import annotations

import concurrent.futures
import functools
import json
import logging
import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..token_bar import TokenBar
from . import store
from .plan import reduce_params
from .reduce import (
    BatchTokens,
    ReduceParams,
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

PAUSE_ENV = "NEURON_SIGNATURES_PAUSE_AFTER_CHECKPOINTS"  # test hook, see _pause


def reducer(device: str) -> Callable[..., None]:
    """The fold of one batch into a layer state: on a CPU the compiled pass of :mod:`.kernel`
    (where numba imports), else the torch ops of :func:`.reduce.update` (GPU, or no numba)."""
    if device == "cpu" and kernel_available():
        return update_kernel
    return update


@functools.cache
def _layer_pool(n: int) -> concurrent.futures.ThreadPoolExecutor:
    return concurrent.futures.ThreadPoolExecutor(n, thread_name_prefix="atlas-layers")


def fold_layers(
    device: str,
    fold: Callable[..., None],
    states: dict[int, dict[str, torch.Tensor]],
    p: ReduceParams,
    got: dict[int, torch.Tensor],
    bt: BatchTokens,
) -> None:
    """Fold one batch into every layer's state.

    On a CPU the compiled pass folds as many layers at once as torch has threads (what is left
    over splits each layer's neurons). Layers are independent and a state does not depend on the
    thread count. Measured on 2 cores, this beats splitting every layer's neurons over both
    threads by 1.2-1.4x: no barrier per layer, each core keeps its own layer's state in cache,
    and one layer's Python glue overlaps another's compiled pass. The torch ops run the layers
    in turn with one intra-op thread: they are many small ops, and with two threads each waits
    for a shared core (a 262k-element sort: 186 ms with 2 threads on a busy 2-core machine, 5 ms
    with 1).
    """
    if device != "cpu":
        for layer in states:
            fold(states[layer], p, got[layer], bt)
        return
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the glue's and torch path's small ops
    try:
        if fold is not update_kernel or threads == 1 or len(states) == 1:
            kw = {"threads": threads} if fold is update_kernel else {}  # neurons split instead
            for layer in states:
                fold(states[layer], p, got[layer], bt, **kw)
            return
        lanes = min(threads, len(states))
        each = threads // lanes
        pool = _layer_pool(lanes)
        jobs = [pool.submit(fold, states[n], p, got[n], bt, threads=each) for n in states]
        for job in jobs:
            job.result()
    finally:
        torch.set_num_threads(threads)


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
    start, states = lo, {layer: new_state(p, dev, layer) for layer in layers}
    ckpt = store.load_checkpoint(root, layers) if cfg.resume else None
    if ckpt is not None:
        start = int(ckpt[0]["next_batch"])
        states = {layer: from_disk(t, p, dev, layer) for layer, t in ckpt[1].items()}
        log.info("resuming %s at batch %d of %d..%d", root, start, lo, hi)
    fold = reducer(dev)
    pad = lm.tokenizer.pad_token_id if lm.tokenizer.pad_token_id is not None else 0
    bar = TokenBar(
        cfg.progress, sum(int(plan.lengths[batches[b]].sum()) for b in range(lo, hi)), "atlas"
    )
    bar.update(sum(int(plan.lengths[batches[b]].sum()) for b in range(lo, start)))
    per_batch: list[tuple[int, float, float]] = []  # (tokens, forward_s, reduce_s) per batch
    since = n_checkpoints = 0
    for b in range(start, hi):
        wins = np.asarray(batches[b], dtype=np.int64)
        lengths = plan.lengths[wins].astype(np.int64)
        ids, mask = batch_inputs(plan.tokens, plan.lengths, wins, pad)
        t = time.perf_counter()
        got = capture_hook_post(lm, ids.to(dev), mask.to(dev), layers)
        _sync(dev)
        fwd = time.perf_counter() - t
        t = time.perf_counter()
        bt = batch_tokens(wins, lengths, p.ctx_len, cfg.include_bos, p.seed, dev)
        fold_layers(dev, fold, states, p, got, bt)
        del got
        _sync(dev)
        red = time.perf_counter() - t
        per_batch.append((int(lengths.sum()), fwd, red))
        since += int(lengths.sum())
        bar.update(int(lengths.sum()))
        if since >= cfg.checkpoint_every and b + 1 < hi:
            cpu = {layer: to_disk(states[layer], p) for layer in layers}
            store.save_checkpoint(root, b + 1, cpu, {"next_batch": b + 1})
            since = 0
            n_checkpoints += 1
            _pause(n_checkpoints)
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
    scores_cache: dict[str, Any] | None = None
    if cfg.write_scores_k:
        from .score_cache import cached_write_scores

        scores, scores_cache = cached_write_scores(
            lm, layers, cfg.write_scores_k, progress=cfg.progress
        )
        store.save_tensors(root / store.WRITE_SCORES, scores)
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
        "forward_s": round(sum(f for _, f, _ in per_batch), 3),
        "reduce_s": round(sum(r for _, _, r in per_batch), 3),
        "batches_s": [[n, round(f, 4), round(r, 4)] for n, f, r in per_batch],
        "save_s": round(t_save, 3),
        "write_scores_s": round(t_scores, 3),
        "write_scores_cache": scores_cache,
        "checkpoint_every": cfg.checkpoint_every,
    }


def _pause(n_checkpoints: int) -> None:
    """Test hook: with ``$NEURON_SIGNATURES_PAUSE_AFTER_CHECKPOINTS=N`` the build stops for good
    after writing its N-th checkpoint, so a test can ``kill -9`` or Ctrl-C it at a known point."""
    n = int(os.environ.get(PAUSE_ENV, "0") or 0)
    if 0 < n <= n_checkpoints:
        log.warning("%s=%d: pausing (waiting to be killed)", PAUSE_ENV, n)
        while True:
            time.sleep(60)


def kept_after_interrupt(root: Path) -> tuple[str, str]:
    """What an interrupted build of ``root`` left, in words, and the flag that goes on from it
    (``--resume``; ``--overwrite`` for a folder without a manifest; ``""`` for an empty one)."""
    manifest, ckpt = root / store.MANIFEST, root / store.CHECKPOINT / "progress.json"
    if (root / store.PARTS).is_dir():
        return f"the Ray build's finished units and spans in {root / store.PARTS} are kept", (
            "--resume"
        )
    if not manifest.is_file():
        busy = root.is_dir() and any(p.name != store.LOCK for p in root.iterdir())
        return f"nothing of {root} is kept", "--overwrite" if busy else ""
    try:
        n = json.loads(manifest.read_text(encoding="utf-8"))["params"]["n_batches"]
        at = json.loads(ckpt.read_text(encoding="utf-8"))["next_batch"] if ckpt.is_file() else 0
    except (OSError, ValueError, KeyError, TypeError):
        return f"{root} keeps its last checkpoint", "--resume"
    if not at:
        return f"{root} has no checkpoint yet (one every --checkpoint_every tokens)", "--resume"
    return f"{root} keeps its checkpoint at batch {at} of {n}", "--resume"
