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
4. As soon as two adjacent spans of units are finished, the driver queues their merge (the
   atlas's exact :func:`~neuron_signatures.atlas.reduce.merge`) ahead of the remaining units;
   a worker runs it into ``parts/span_AAAA_BBBB``. Merges thus run in parallel on the workers
   (a tree, not a chain on the driver), and the disk holds about one part per worker; at the
   end the span of all units and the static files move into the atlas. A re-run with
   ``resume`` keeps every finished unit and span.
5. When every worker is lost beyond its restarts, the build stops with a one-line error that
   names the units not built and the command that resumes it (:func:`~.pool.run_pool`).
"""

from __future__ import annotations

import collections
import logging
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from ..atlas import store
from ..atlas.build import AtlasConfig, check_config, plan_corpus, write_static
from ..atlas.corpus import CorpusSpec, check_corpus
from ..atlas.plan import plan_manifest, resume_mismatch
from ..errors import BadArgumentError, RunExistsError
from ..store.manifest import utc_now
from ..store.writable import check_writable
from ..token_bar import TokenBar
from .cluster import init_ray
from .pool import id_ranges, nodes_used, run_pool, start_actors
from .storage import check_shared
from .units import PARTS, STATIC, UNITS, finish, pair_adjacent, scan, split_units

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
        resume_command: the shell command that resumes this build, quoted when workers are lost
            (the CLI passes its own command line with ``--resume``).
        lost_timeout_s: a lost worker that Ray has not brought back this long (its node gone,
            no room to restart it) is given up; when every worker is given up the build stops.
    """

    address: str | None = None
    workers: int | None = None
    units: int | None = None
    max_retries: int = 3
    resume_command: str | None = None
    lost_timeout_s: float = 300.0


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
    on_merge: Callable[[int, int, int], None] | None = None,
    on_unit: Callable[[int], None] | None = None,
) -> Path:
    """Build (or, with ``cfg.resume``, finish) ``cfg.out_dir`` on Ray workers; returns it.

    Args:
        load: ``load(tokenizer) -> LoadedModel`` run in each worker (picklable).
        on_batch: run in the worker after each batch (tests kill a worker with it).
        on_merge: run in the worker with ``(a, b, c)`` after a merge's layers are written, before
            its rename (tests kill a worker there).
        on_unit: run in the driver with K after units ``0..K-1`` are merged (tests interrupt).
    """
    ray = require_ray()
    opts = opts or RayOptions()
    t0, c0 = time.perf_counter(), time.process_time()
    check_config(cfg)
    if cfg.batches is not None:
        raise BadArgumentError("--engine ray builds the whole plan: drop batches")
    root = Path(cfg.out_dir)
    parts = root / PARTS
    old = _check_target(root, parts, cfg)
    if old == "complete":
        return root
    check_writable(root)  # before the corpus, the tokenizer and Ray
    spec = CorpusSpec(cfg.corpus, cfg.text_field, cfg.paragraphs)
    check_corpus(spec)
    from .. import models

    tokenizer = load(None).tokenizer if load else models.load_tokenizer(cfg.model_name)
    plan = plan_corpus(cfg, spec, tokenizer)
    c1 = time.process_time()  # setup (tokenizer, corpus plan) done: one process does it too
    started = init_ray(ray, opts.address, opts.workers)
    actors: list[Any] = []
    try:
        from .worker import UnitWorker

        actors = start_actors(
            ray, UnitWorker, opts.workers, opts.max_retries, cfg.model_name, cfg.device,
            cfg.model_dtype, load, on_batch, on_merge,
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
            check_shared(ray, actors, root)  # before anything is written for the workers
            if cfg.overwrite:
                store.clear(root)
                shutil.rmtree(parts, ignore_errors=True)
            if old is None:
                write_static(parts / STATIC, plan, manifest, tokenizer)
            tokens = [int(plan.lengths[b].sum()) for b in batches]
            units = _units(parts, tokens, opts.units or 4 * len(actors))
            run = _Run(ray, actors, cfg, parts, units, tokens, opts, on_unit)
            stats = run.loop()
            stats["nodes"] = nodes_used(ray, stats["per_worker"])
            finish(root, parts, len(units))
    finally:
        for a in actors:
            ray.kill(a)
        if started:
            ray.shutdown()
    stats["elapsed_s"] = round(time.perf_counter() - t0, 3)
    c2 = time.process_time()
    stats["driver_cpu_s"] = round(c2 - c0, 3)
    stats["driver_setup_cpu_s"] = round(c1 - c0, 3)  # tokenizer load and corpus plan
    stats["driver_ray_cpu_s"] = round(c2 - c1, 3)  # Ray, the workers' start, the task loop
    store.write_json(root / store.BUILD_LOG, {**stats, "created_at_utc": utc_now()})
    return root


def summary(root: Path) -> str:
    """One line on how the Ray build of ``root`` went (from its ``build.json``)."""
    import json

    try:
        b = json.loads((root / store.BUILD_LOG).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return ""
    if b.get("engine") != "ray":
        return ""
    nodes = len(b.get("nodes") or {}) or "?"
    n = b.get("resubmitted", 0)
    lost = f"{n} task{'s' if n != 1 else ''} resubmitted after lost workers" if n else "none lost"
    return (
        f"ray: {b['units_run']} of {b['units']} units built on {b['workers']} workers across "
        f"{nodes} node(s) ({b['units_skipped']} kept from before), {b['merges_run']} merges; "
        f"{lost}"
    )


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
    """The driver loop: hand units and merges to idle workers, resubmit lost ones.

    Tasks ``0..n-1`` build units; task ``n + j`` is the merge ``self.merges[j]`` of two adjacent
    finished spans, queued ahead of units as soon as both exist (so the disk holds about one part
    per worker) and run on a worker: the driver does no math.
    """

    def __init__(
        self,
        ray: Any,
        actors: list[Any],
        cfg: AtlasConfig,
        parts: Path,
        units: list[list[int]],
        tokens: list[int],
        opts: RayOptions,
        on_unit: Callable[[int], None] | None,
    ) -> None:
        self.ray, self.actors, self.cfg, self.parts = ray, actors, cfg, parts
        self.units, self.opts, self.on_unit = units, opts, on_unit
        self.unit_tokens = [sum(tokens[lo:hi]) for lo, hi in units]
        self.merges: list[tuple[int, int, int]] = []
        self.spans: list[tuple[int, int]] = []  # finished, not being merged
        self.todo: collections.deque[int] = collections.deque()
        self.per_worker: dict[str, dict[str, Any]] = {}

    def loop(self) -> dict[str, Any]:
        n = len(self.units)
        self.spans = scan(self.parts)
        covered = {u for a, b in self.spans for u in range(a, b)}
        self.bar = TokenBar(self.cfg.progress, sum(self.unit_tokens), "atlas (ray)")
        self.bar.update(sum(self.unit_tokens[u] for u in covered))
        self.todo.extend(u for u in range(n) if u not in covered)
        self.n_done = len(covered)
        self._queue_merges()
        try:
            resubmitted = run_pool(
                self.ray,
                self.actors,
                self.todo,
                self._submit,
                self._finished,
                self.opts.max_retries,
                describe=self._describe,
                probe_timeout_s=self.opts.lost_timeout_s,
                resume=self.opts.resume_command
                or f"the same atlas command with --resume (--out_dir {self.parts.parent})",
            )
        finally:
            self.bar.close()
        if self.spans != [(0, n)]:
            raise BadArgumentError(
                f"the Ray build ended with parts {self.spans}: re-run with --resume"
            )
        for w in self.per_worker.values():
            w["tok_per_s"] = round(w["tokens"] / max(w["seconds"], 1e-9), 1)
        return {
            "engine": "ray",
            "workers": len(self.actors),
            "units": n,
            "units_skipped": len(covered),
            "units_run": n - len(covered),
            "merges_run": len(self.merges),
            "resubmitted": resubmitted,
            "per_worker": self.per_worker,
        }

    def _describe(self, tasks: list[int]) -> str:
        """``"units 3-5, the merge of units 0-1"``: what lost tasks leave undone."""
        n = len(self.units)
        units = [t for t in tasks if t < n]
        out = [f"unit{'s' if len(units) > 1 else ''} {id_ranges(units)}"] if units else []
        out += [
            f"the merge of units {a}-{c - 1}"
            for a, _, c in (self.merges[t - n] for t in tasks if t >= n)
        ]
        return ", ".join(out) or "nothing"

    def _submit(self, actor: Any, t: int) -> Any:
        n = len(self.units)
        if t >= n:
            return actor.merge.remote(str(self.parts), *self.merges[t - n])
        lo, hi = self.units[t]
        return actor.run_unit.remote(self.cfg, t, lo, hi, str(self.parts))

    def _finished(self, t: int, r: dict[str, Any]) -> None:
        n = len(self.units)
        w = self.per_worker.setdefault(
            r["worker"],
            {"units": 0, "tokens": 0, "seconds": 0.0, "merges": 0, "merge_s": 0.0, "cpu_s": 0.0},
        )
        w["node"] = r.get("node")
        w["cpu_s"] = round(w["cpu_s"] + r.get("cpu_s", 0.0), 3)
        if t >= n:
            a, _, c = self.merges[t - n]
            w["merges"] += 1
            w["merge_s"] += r["seconds"]
            log.info("merged units %d..%d on %s in %.1f s", a, c - 1, r["worker"], r["seconds"])
            self.spans.append((a, c))
        else:
            w["units"] += 1
            w["tokens"] += r["tokens"]
            w["seconds"] += r["seconds"]
            log.info(
                "unit %d/%d on %s: %d tokens in %.1f s (%.0f tok/s)",
                t + 1, n, r["worker"], r["tokens"], r["seconds"],
                r["tokens"] / max(r["seconds"], 1e-9),
            )  # fmt: skip
            self.n_done += 1
            self.bar.update(r["tokens"], f"units {self.n_done}/{n}")
            self.spans.append((t, t + 1))
            if self.on_unit:
                self.on_unit(self.n_done)
        self._queue_merges()

    def _queue_merges(self) -> None:
        """Queue merges of adjacent finished spans, ahead of the remaining units."""
        self.spans.sort()
        for a, b, c in pair_adjacent(self.spans):
            self.spans.remove((a, b))
            self.spans.remove((b, c))
            self.merges.append((a, b, c))
            self.todo.appendleft(len(self.units) + len(self.merges) - 1)
