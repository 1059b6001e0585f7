"""The Ray actor of an atlas build: loads the model once, then builds units (partial atlases)
and merges finished ones (:func:`.units.merge_spans`), as the driver asks.

The actor reads the plan's windows from ``<atlas>/parts/static/`` (shared storage), rebuilds the
plan's batches from the manifest, runs :func:`neuron_signatures.atlas.run.run_batches` over the
unit's batch range into ``unit_KKKK.tmp-<id>/`` and renames it to ``unit_KKKK`` when complete.
"""

from __future__ import annotations

import os
import shutil
import socket
import time
import uuid
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from ..atlas import store
from ..atlas.plan import window_batches
from ..atlas.windows import WindowPlan
from .storage import answer_probe, node_id
from .units import STATIC, merge_spans, unit_dir

NO_CHECKPOINT = 10**18  # a unit is the checkpoint: no state snapshots inside one


class ModelWorker:
    """A Ray worker that loads the model once (``load`` replaces ``load_model`` in tests)."""

    def __init__(
        self,
        model_name: str,
        device: str | None,
        model_dtype: str,
        load: Callable[..., Any] | None = None,
    ) -> None:
        from ..models import load_model

        self.lm = load(None) if load else load_model(model_name, device, model_dtype)
        self.node = node_id()

    def pid(self) -> int:
        return os.getpid()

    def probe_storage(self, folder: str, token: str) -> dict[str, Any]:
        """Answer the driver's shared-storage probe (:func:`.storage.answer_probe`)."""
        return answer_probe(folder, token)

    def meta(self) -> dict[str, Any]:
        """The model facts the driver's plan and manifest record."""
        keys = ("name", "n_layers", "d_mlp", "d_model", "dtype", "source", "device")
        return {k: getattr(self.lm, k) for k in keys}


class UnitWorker(ModelWorker):
    """One worker: ``meta()`` for the driver's manifest, ``run_unit(...)`` per unit."""

    def __init__(
        self,
        model_name: str,
        device: str | None,
        model_dtype: str,
        load: Callable[..., Any] | None = None,
        on_batch: Callable[[int], None] | None = None,
        on_merge: Callable[[int, int, int], None] | None = None,
    ) -> None:
        super().__init__(model_name, device, model_dtype, load)
        self.on_batch = on_batch
        self.on_merge = on_merge
        self._parts: Path | None = None
        self._plan: WindowPlan | None = None
        self._batches: list[list[int]] = []
        self._manifest: dict[str, Any] = {}

    def _load_static(self, parts: Path) -> None:
        if self._parts == parts:
            return
        static = parts / STATIC
        self._manifest = store.read_manifest(static)
        t = store.load_tensors(static / store.WINDOWS)
        tokens, lengths = t["tokens"].numpy(), t["length"].numpy()
        self._plan = WindowPlan(
            int(self._manifest["params"]["ctx_len"]),
            tokens,
            lengths,
            t["doc"].numpy(),
            t["offset"].numpy(),
            [],
            "",
            0,
            0,
        )
        p = self._manifest["params"]
        self._batches = window_batches(lengths, p["batch_size"], p["max_batch_tokens"])
        assert len(self._batches) == p["n_batches"], "the plan's batches changed"
        self._parts = parts

    def merge(self, parts: str, a: int, b: int, c: int) -> dict[str, Any]:
        """Merge the finished spans ``[a, b)`` and ``[b, c)`` into ``[a, c)`` (exact, on CPU)."""
        t0, c0 = time.perf_counter(), time.process_time()
        merge_spans(Path(parts), a, b, c, before_rename=self.on_merge)
        return {
            "span": [a, c],
            "seconds": round(time.perf_counter() - t0, 3),
            "cpu_s": round(time.process_time() - c0, 3),  # every thread of this worker
            "worker": f"{socket.gethostname()}:{os.getpid()}",
            "node": self.node,
        }

    def run_unit(self, cfg: Any, k: int, lo: int, hi: int, parts: str) -> dict[str, Any]:
        """Build batches ``lo..hi`` into ``parts/unit_KKKK``; returns who did it and how fast."""
        from ..atlas.run import run_batches

        t0, c0 = time.perf_counter(), time.process_time()
        root = Path(parts)
        self._load_static(root)
        assert self._plan is not None
        final = unit_dir(root, k)
        tmp = root / f"{final.name}.tmp-{uuid.uuid4().hex[:8]}"
        tmp.mkdir()
        # Write scores depend on the model only: the first unit computes them once.
        unit_cfg = replace(
            cfg,
            resume=False,
            progress=False,
            checkpoint_every=NO_CHECKPOINT,
            write_scores_k=cfg.write_scores_k if k == 0 else 0,
        )
        stats = run_batches(
            unit_cfg,
            tmp,
            self.lm,
            self._plan,
            self._batches,
            self._manifest,
            (lo, hi),
            self.on_batch,
        )
        if final.exists():  # a retried unit finished twice: keep the first
            shutil.rmtree(tmp)
        else:
            os.rename(tmp, final)
        tokens = int(np.sum([self._plan.lengths[self._batches[b]].sum() for b in range(lo, hi)]))
        return {
            "unit": k,
            "batches": [lo, hi],
            "tokens": tokens,
            "seconds": round(time.perf_counter() - t0, 3),
            "cpu_s": round(time.process_time() - c0, 3),  # every thread of this worker
            "forward_s": stats["forward_s"],
            "reduce_s": stats["reduce_s"],
            "worker": f"{socket.gethostname()}:{os.getpid()}",
            "node": self.node,
            "device": self.lm.device,
        }
