"""``atlas --engine ray``: build an atlas with Ray workers, byte-identical to one process.

1. The driver checks the flags and the folder, tokenises the corpus and plans the windows once
   (:func:`~neuron_signatures.atlas.windows.plan_windows`), exactly as ``build_atlas`` does.
2. It starts (or joins, with ``address``) Ray and one :class:`~.worker.UnitWorker` actor per
   worker (one GPU each on a GPU cluster); each loads the model once. The first reports the
   model's facts, from which the driver writes the manifest and the windows to
   ``<atlas>/parts/static/`` (shared storage) and cuts the plan's batches into units of about
   equal tokens (``parts/units.json``).
3. Units are handed to idle actors; each builds a partial atlas ``parts/unit_KKKK`` (renamed into
   place when complete). An actor killed mid-unit is restarted by Ray and its unit resubmitted.
4. The driver folds finished units, in unit order, into ``parts/prefix_KKKK`` with the atlas's
   exact merge (:func:`~neuron_signatures.atlas.reduce.merge`), so the disk holds about one
   part per worker; at the end the last prefix and the static files move into the atlas.
   A re-run with ``resume`` keeps the prefix and every finished unit.
"""

from __future__ import annotations

import logging
import queue
import shutil
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from ..atlas import store
from ..atlas.build import AtlasConfig, _now, _write_static, check_config, plan_corpus
from ..atlas.corpus import CorpusSpec, check_corpus
from ..atlas.plan import plan_manifest, reduce_params, resume_mismatch
from ..errors import BadArgumentError, RunExistsError
from .pool import init_ray, run_pool, start_actors
from .units import PARTS, STATIC, UNITS, finish, fold, scan, split_units

log = logging.getLogger(__name__)
PIP_HINT = "pip install 'neuron-signatures[ray]'"


@dataclass
class RayOptions:
    """How to run on Ray.

    Attributes:
        address: a running cluster (``auto``, ``ray://head:10001``); ``None`` starts a local Ray.
        workers: actors (default: the cluster's GPUs, or 2 on a machine without GPUs).
        units: units the batches are cut into (default: 4 per worker).
        max_retries: restarts of a killed actor, and resubmissions of one unit.
    """

    address: str | None = None
    workers: int | None = None
    units: int | None = None
    max_retries: int = 3


def require_ray() -> Any:
    """The ``ray`` module, or a one-line error naming the extra to install."""
    try:
        import ray
    except ImportError:
        raise BadArgumentError(f"--engine ray needs Ray: {PIP_HINT}") from None
    return ray


def build_atlas_ray(
    cfg: AtlasConfig,
    opts: RayOptions | None = None,
    *,
    load: Callable[..., Any] | None = None,
    on_batch: Callable[[int], None] | None = None,
    on_unit: Callable[[int], None] | None = None,
) -> Path:
    """Build (or, with ``cfg.resume``, finish) ``cfg.out_dir`` on Ray workers; returns it.

    Args:
        load: ``load(tokenizer) -> LoadedModel`` run in each worker (picklable).
        on_batch: run in the worker after each batch (tests kill a worker with it).
        on_unit: run in the driver with K after units ``0..K-1`` are merged (tests interrupt).
    """
    ray = require_ray()
    opts = opts or RayOptions()
    t0 = time.perf_counter()
    check_config(cfg)
    if cfg.batches is not None:
        raise BadArgumentError("--engine ray builds the whole plan: drop batches")
    root = Path(cfg.out_dir)
    parts = root / PARTS
    old = _check_target(root, parts, cfg)
    if old == "complete":
        return root
    spec = CorpusSpec(cfg.corpus, cfg.text_field, cfg.paragraphs)
    check_corpus(spec)
    from .. import models

    tokenizer = load(None).tokenizer if load else models.load_tokenizer(cfg.model_name)
    plan = plan_corpus(cfg, spec, tokenizer)
    started = init_ray(ray, opts.address, opts.workers)
    actors: list[Any] = []
    try:
        from .worker import UnitWorker

        actors = start_actors(
            ray, UnitWorker, opts.workers, opts.max_retries, cfg.model_name, cfg.device,
            cfg.model_dtype, load, on_batch,
        )  # fmt: skip
        meta = SimpleNamespace(**ray.get(actors[0].meta.remote()))
        manifest, batches = plan_manifest(cfg, spec, plan, meta)
        if isinstance(old, dict):
            diff = resume_mismatch(old, manifest)
            if diff:
                raise BadArgumentError(
                    f"cannot resume {root}: it was built with another setting ({diff}); use the "
                    "same flags, another --out_dir, or --overwrite"
                )
        with store.Lock(root):
            if cfg.overwrite:
                store.clear(root)
                shutil.rmtree(parts, ignore_errors=True)
            if old is None:
                _write_static(parts / STATIC, plan, manifest, tokenizer)
            tokens = [int(plan.lengths[b].sum()) for b in batches]
            units = _units(parts, tokens, opts.units or 4 * len(actors))
            run = _Run(ray, actors, cfg, parts, units, tokens, manifest, opts, on_unit)
            stats = run.loop()
            finish(root, parts, len(units))
    finally:
        for a in actors:
            ray.kill(a)
        if started:
            ray.shutdown()
    stats["elapsed_s"] = round(time.perf_counter() - t0, 3)
    store.write_json(root / store.BUILD_LOG, {**stats, "created_at_utc": _now()})
    return root


def _check_target(root: Path, parts: Path, cfg: AtlasConfig) -> dict[str, Any] | str | None:
    """The old static manifest on resume, ``"complete"`` when nothing is left, else ``None``."""
    static = parts / STATIC / store.MANIFEST
    if cfg.resume:
        if (root / store.MANIFEST).is_file():
            if store.read_manifest(root).get("complete"):
                log.warning("atlas %s is already complete: nothing to resume", root)
                return "complete"
            raise RunExistsError(
                f"{root} is a single-process partial atlas: resume it without --engine ray"
            )
        if not static.is_file():
            raise RunExistsError(f"{root} holds no Ray build to resume: drop --resume")
        return store.read_manifest(parts / STATIC)
    if cfg.overwrite and static.is_file():
        return None
    store.check_target(root, resume=False, overwrite=cfg.overwrite)
    return None


def _units(parts: Path, tokens: list[int], n_units: int) -> list[list[int]]:
    """The units of this build: those on disk (resume), else a new split written to disk."""
    path = parts / UNITS
    if path.is_file():
        import json

        units: list[list[int]] = json.loads(path.read_text(encoding="utf-8"))
        if units[-1][1] == len(tokens):
            return units
    units = split_units(tokens, n_units)
    store.write_json(path, units)
    return units


class _Run:
    """The driver loop: hand units to idle workers, resubmit lost ones, fold finished ones."""

    def __init__(
        self,
        ray: Any,
        actors: list[Any],
        cfg: AtlasConfig,
        parts: Path,
        units: list[list[int]],
        tokens: list[int],
        manifest: dict[str, Any],
        opts: RayOptions,
        on_unit: Callable[[int], None] | None,
    ) -> None:
        self.ray, self.actors, self.cfg, self.parts = ray, actors, cfg, parts
        self.units, self.opts, self.on_unit = units, opts, on_unit
        self.unit_tokens = [sum(tokens[lo:hi]) for lo, hi in units]
        self.p = reduce_params(manifest)
        self.layers: list[int] = manifest["layers"]
        self.n_batches = int(manifest["params"]["n_batches"])
        self.fold_s = 0.0

    def loop(self) -> dict[str, Any]:
        n = len(self.units)
        k, done = scan(self.parts)
        skipped = k + len(done)
        bar = _bar(self.cfg.progress, sum(self.unit_tokens))
        bar.update(sum(self.unit_tokens[u] for u in range(n) if u < k or u in done))
        todo = [u for u in range(k, n) if u not in done]
        per_worker: dict[str, dict[str, float]] = {}
        finished_q: queue.Queue[int] = queue.Queue()
        for u in sorted(done):
            finished_q.put(u)
        n_done = skipped

        def submit(actor: Any, u: int) -> Any:
            lo, hi = self.units[u]
            return actor.run_unit.remote(self.cfg, u, lo, hi, str(self.parts))

        def finished(u: int, r: dict[str, Any]) -> None:
            nonlocal n_done
            if folder.done():
                folder.result()  # a failed merge stops the run
            w = per_worker.setdefault(r["worker"], {"units": 0, "tokens": 0, "seconds": 0.0})
            w["units"] += 1
            w["tokens"] += r["tokens"]
            w["seconds"] += r["seconds"]
            log.info(
                "unit %d/%d on %s: %d tokens in %.1f s (%.0f tok/s)",
                u + 1, n, r["worker"], r["tokens"], r["seconds"],
                r["tokens"] / max(r["seconds"], 1e-9),
            )  # fmt: skip
            n_done += 1
            bar.update(r["tokens"], f"units {n_done}/{n}")
            finished_q.put(u)

        # Merges run on a thread: workers get new units while the driver folds finished ones.
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="fold") as pool:
            folder = pool.submit(self._fold_all, k, n, finished_q)
            try:
                resubmitted = run_pool(
                    self.ray, self.actors, todo, submit, finished, self.opts.max_retries
                )
            except BaseException:
                finished_q.put(-1)  # stop the folder
                raise
            folder.result()
        bar.close()
        for w in per_worker.values():
            w["tok_per_s"] = round(w["tokens"] / max(w["seconds"], 1e-9), 1)
        return {
            "engine": "ray",
            "workers": len(self.actors),
            "units": n,
            "units_skipped": skipped,
            "units_run": n - skipped,
            "resubmitted": resubmitted,
            "fold_s": round(self.fold_s, 3),
            "per_worker": per_worker,
        }

    def _fold_all(self, k: int, n: int, finished: queue.Queue[int]) -> None:
        """Fold units into the prefix in unit order as they finish (``-1`` stops early)."""
        done: set[int] = set()
        while k < n:
            while k in done:
                t = time.perf_counter()
                fold(self.parts, k, self.p, self.layers, self.n_batches)
                self.fold_s += time.perf_counter() - t
                done.discard(k)
                k += 1
                if self.on_unit:
                    self.on_unit(k)
            if k < n:
                u = finished.get()
                if u < 0:
                    return
                done.add(u)


class _Bar:
    """tqdm over tokens with the units done as its postfix (off without ``progress``)."""

    def __init__(self, enabled: bool, total: int) -> None:
        self._bar = None
        if enabled:
            from tqdm import tqdm

            self._bar = tqdm(total=total, unit="tok", unit_scale=True, desc="atlas (ray)")

    def update(self, n: int, postfix: str | None = None) -> None:
        if self._bar is not None:
            if postfix:
                self._bar.set_postfix_str(postfix, refresh=False)
            self._bar.update(n)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()


def _bar(enabled: bool, total: int) -> _Bar:
    return _Bar(enabled, total)
