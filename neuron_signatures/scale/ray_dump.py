"""``dump --engine ray``: the dump's shards computed by Ray workers, the run folder owned here.

1. The driver does everything a dump does before its shard loop (:func:`~neuron_signatures.
   capture.dump`): claim and lock the folder, tokenise, plan the batches, check a resume, write
   the manifest with every shard planned. The model's facts come from the first worker, so the
   driver never loads the model.
2. Each shard is a task: a :class:`ShardWorker` actor (the model loaded once) captures the batch
   with :func:`~neuron_signatures.capture.capture_shard` and writes the shard file into the run
   folder (shared storage) under a temporary name, renamed when whole.
3. The driver logs each shard's size and sha256 in the progress log as it arrives, exactly as
   the one-process writer does, and finishes the manifest. A killed worker's shard is computed
   again (by any worker); a killed driver is resumed with ``--resume`` like any dump. When
   every worker is lost beyond its restarts, the dump stops with a one-line error naming the
   shards not written and the command that resumes it.
The shards and the manifest are those of one process (but for times and durations).
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from ..capture import DumpConfig, DumpResult, capture_shard, dump
from ..store.atomic import atomic_write_image
from ..store.manifest import ACTIVATIONS_DIR
from ..store.progress import append_progress
from ..store.shard_image import ShardBuffers
from .cluster import init_ray
from .pool import id_ranges, run_pool, start_actors
from .ray_atlas import RayOptions, require_ray
from .storage import check_shared
from .worker import ModelWorker

log = logging.getLogger(__name__)


class ShardWorker(ModelWorker):
    """One worker of a dump: ``meta()`` for the driver's plan, ``run_shard(...)`` per shard."""

    def __init__(
        self,
        model_name: str,
        device: str | None,
        model_dtype: str,
        load: Callable[..., Any] | None = None,
        on_shard: Callable[[int], None] | None = None,
    ) -> None:
        super().__init__(model_name, device, model_dtype, load)
        self.on_shard = on_shard
        self.buffers = ShardBuffers(n=1)  # the shard file's image, reused (writes are in turn)

    def run_shard(
        self,
        run_dir: str,
        index: int,
        file: str,
        recs: list[dict],
        layers: list[int],
        save_dtype: str,
        check_finite: bool,
    ) -> dict[str, Any]:
        """Capture one batch and write it as shard ``file``; returns its size and sha256."""
        from ..models import torch_dtype

        t0 = time.perf_counter()
        tok = self.lm.tokenizer
        pad = tok.pad_token_id if tok.pad_token_id is not None else 0
        save = torch_dtype(save_dtype)
        image = capture_shard(self.lm, recs, layers, save, check_finite, pad, self.buffers)
        path = Path(run_dir) / ACTIVATIONS_DIR / file
        size, digest = atomic_write_image(path, image)
        if self.on_shard:
            self.on_shard(index)
        return {
            "bytes": size,
            "sha256": digest,
            "tokens": sum(len(r["token_ids"]) for r in recs),
            "seconds": time.perf_counter() - t0,
            "worker": f"{socket.gethostname()}:{os.getpid()}",
        }


def dump_ray(
    cfg: DumpConfig,
    opts: RayOptions | None = None,
    *,
    load: Callable[..., Any] | None = None,
    on_shard: Callable[[int], None] | None = None,
    on_batch: Callable[[int], None] | None = None,
) -> DumpResult:
    """Dump ``cfg.prompts`` into ``cfg.out_dir`` with Ray workers (see the module docstring).

    Args:
        load: ``load(tokenizer) -> LoadedModel`` run in each worker (picklable).
        on_shard: run in the worker after it wrote a shard (tests kill a worker with it).
        on_batch: run in the driver after a shard is logged (tests interrupt the driver).
    """
    from ..store.claim import check_target
    from ..store.writable import check_writable

    ray = require_ray()
    opts = opts or RayOptions()
    check_target(Path(cfg.out_dir), resume=cfg.resume, overwrite=cfg.overwrite)  # before Ray
    check_writable(Path(cfg.out_dir))
    with _workers(ray, opts, cfg, load, on_shard) as actors:

        def meta(_: Any) -> Any:
            from ..models import load_tokenizer

            tokenizer = load(None).tokenizer if load else load_tokenizer(cfg.model_name)
            return SimpleNamespace(tokenizer=tokenizer, **ray.get(actors[0].meta.remote()))

        def capture_all(
            lm: Any, w: Any, records: list[dict], batches: list[list[int]], layers: list[int],
            cfg: DumpConfig, bar: Any, on_batch: Callable[[int], None] | None,
        ) -> int:  # fmt: skip
            check_shared(ray, actors, Path(w.run_dir))  # before any shard is handed out
            todo = []
            for s, batch in enumerate(batches):
                if w.shard_done(s):
                    bar.count(sum(len(records[i]["token_ids"]) for i in batch), len(batch))
                else:
                    todo.append(s)

            def submit(actor: Any, s: int) -> Any:
                recs = [records[i] for i in batches[s]]
                file = w.manifest["shards"][s]["file"]
                return actor.run_shard.remote(
                    str(w.run_dir), s, file, recs, layers, cfg.save_dtype, cfg.check_finite
                )

            per_worker: dict[str, list[float]] = {}

            def finished(s: int, r: dict[str, Any]) -> None:
                tally = per_worker.setdefault(r["worker"], [0, 0.0])
                tally[0] += r["tokens"]
                tally[1] += r["seconds"]
                entry = w.manifest["shards"][s]
                entry["bytes"], entry["sha256"] = r["bytes"], r["sha256"]
                append_progress(w.run_dir, s, r["bytes"], r["sha256"])
                bar.count(r["tokens"], len(batches[s]))
                if on_batch:
                    on_batch(s)

            run_pool(
                ray, actors, todo, submit, finished, opts.max_retries,
                probe_timeout_s=opts.lost_timeout_s,
                describe=lambda ss: f"shard{'s' if len(ss) > 1 else ''} {id_ranges(ss)}",
                resume=opts.resume_command
                or f"the same dump command with --resume (--out_dir {cfg.out_dir})",
            )  # fmt: skip
            for name, (n_tok, sec) in sorted(per_worker.items()):
                log.info("worker %s: %d tokens in %.1f s (%.0f tok/s)", name, n_tok, sec,
                         n_tok / max(sec, 1e-9))  # fmt: skip
            return len(todo)

        return dump(cfg, load=meta, on_batch=on_batch, capture_all=capture_all)


@contextlib.contextmanager
def _workers(
    ray: Any,
    opts: RayOptions,
    cfg: DumpConfig,
    load: Callable[..., Any] | None,
    on_shard: Callable[[int], None] | None,
) -> Iterator[list[Any]]:
    started = init_ray(ray, opts.address, opts.workers)
    actors: list[Any] = []
    try:
        actors = start_actors(
            ray, ShardWorker, opts.workers, opts.max_retries, cfg.model_name, cfg.device,
            cfg.model_dtype, load, on_shard,
        )  # fmt: skip
        yield actors
    finally:
        for a in actors:
            ray.kill(a)
        if started:
            ray.shutdown()
