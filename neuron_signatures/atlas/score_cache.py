"""On-disk cache of write scores: each layer computed once per model weights and reused by every
atlas (they cost minutes on a CPU and depend on the weights only, never on the corpus).

1. Keys are fingerprints of exactly the tensors a layer's scores are computed from: sha256 of the
   bytes, dtype and shape of ``W_U`` and the final norm gain (the model key; ~1 s for Gemma 3
   270M's 0.7 GB, against minutes of matmuls), and per layer of ``W_out[l]`` and its post-MLP
   gain. Any changed weight misses; the same weights hit wherever they were loaded from (the
   embedded model, a hub id, a folder, a GGUF, an in-memory model). File sizes and mtimes would
   be cheaper but miss a model edited in memory and tell nothing about what is inside.
2. Into the model key also go ``k``, the chunk, the selection (compiled pass or ``torch.topk``,
   which may order ties differently), the device type, the CPU's vector ISA (a matmul kernel's
   rounding), :data:`SCORES_VERSION` and the versions of torch and numba.
3. Layout: ``<root>/<model key[:24]>/layer_LLL-<layer key[:24]>.safetensors`` with the full keys
   and a sha256 of the tensors in the safetensors metadata; ``<root>`` is
   ``$NEURON_SIGNATURES_SCORE_CACHE`` (``off`` disables the cache) or ``write_scores/`` in the
   model cache (:func:`neuron_signatures.models.cache_root`), beside the converted models.
4. A read checks keys, names, shapes, dtypes and the checksum; anything wrong (a truncated or
   edited file) is logged, recomputed and rewritten. Writes are atomic (temporary name, fsync,
   rename), so concurrent builds at worst compute the same layer twice and write equal bytes.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..models.specs import cache_root
from ..store.atomic import atomic_write_bytes
from .scores import VOCAB_CHUNK, compute_layer, use_kernel, value_span

log = logging.getLogger(__name__)
SCORES_VERSION = 1  # bump when the computation's numbers or tie order change
NAMES = ("pos_val", "pos_id", "neg_val", "neg_id")
CACHE_ENV = "NEURON_SIGNATURES_SCORE_CACHE"


def cache_dir() -> Path | None:
    """The cache's root folder, or None when ``$NEURON_SIGNATURES_SCORE_CACHE`` is ``off``."""
    env = os.environ.get(CACHE_ENV, "").strip()
    if env.lower() in ("off", "0", "none", "false"):
        return None
    return Path(env).expanduser() if env else cache_root() / "write_scores"


def tensor_digest(*tensors: Any) -> str:
    """sha256 of the dtypes, shapes and bytes of ``tensors`` (any device, any dtype)."""
    import torch

    h = hashlib.sha256()
    for t in tensors:
        t = t.detach()
        h.update(f"{t.dtype}{tuple(t.shape)};".encode())
        flat = t.cpu().contiguous().reshape(-1)
        h.update(memoryview(flat.view(torch.uint8).numpy()))
    return h.hexdigest()


def _versions() -> str:
    from importlib.metadata import PackageNotFoundError, version

    out = []
    for dist in ("torch", "numba"):
        try:
            out.append(f"{dist}={version(dist)}")
        except PackageNotFoundError:
            out.append(f"{dist}=none")
    return ",".join(out)


def model_key(weights: Any, k: int) -> str:
    """The key shared by every layer of one model and ``k`` (see the module docstring)."""
    import torch

    device = weights.w_u.device
    kernel = use_kernel(device)
    isa = torch.backends.cpu.get_cpu_capability() if device.type == "cpu" else device.type
    parts = [
        f"v{SCORES_VERSION}",
        tensor_digest(weights.w_u, weights.g_final),
        f"k={k}",
        f"chunk={VOCAB_CHUNK}",
        "kernel" if kernel else "topk",
        f"{device.type}/{isa}",
        _versions(),
    ]
    return hashlib.sha256("|".join(parts).encode()).hexdigest()


def layer_key(weights: Any, layer: int, base: str) -> str:
    return hashlib.sha256(
        f"{base}|{layer}|{tensor_digest(weights.w_out[layer], weights.g_post_mlp[layer])}".encode()
    ).hexdigest()


def _payload_digest(tensors: dict[str, Any]) -> str:
    return tensor_digest(*(tensors[n] for n in NAMES))


def read_entry(path: Path, key: str, d_mlp: int, k: int) -> dict[str, Any] | None:
    """A cached layer if ``path`` holds a sound entry for ``key``, else None (logged if bad)."""
    import torch
    from safetensors import safe_open

    if not path.is_file():
        return None
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            tensors = {n: f.get_tensor(n) for n in NAMES}
        want = {"val": torch.float32, "id": torch.int64}
        ok = meta.get("key") == key and all(
            tuple(t.shape) == (d_mlp, k) and t.dtype == want[n.split("_")[1]]
            for n, t in tensors.items()
        )
        if ok and meta.get("sha256") == _payload_digest(tensors):
            return tensors
    except Exception as e:  # a truncated file, a header that is not JSON, a missing tensor
        log.warning("write-score cache entry %s is unreadable (%s): recomputing it", path, e)
        return None
    log.warning("write-score cache entry %s does not match its checksum: recomputing it", path)
    return None


def write_entry(path: Path, key: str, tensors: dict[str, Any]) -> None:
    from safetensors.torch import save

    meta = {"key": key, "sha256": _payload_digest(tensors), "format": f"v{SCORES_VERSION}"}
    atomic_write_bytes(path, save({n: tensors[n] for n in NAMES}, metadata=meta))


class _Bar:
    """tqdm over vocabulary chunks of the layers to compute, or nothing."""

    def __init__(self, enabled: bool, total: int, cached: int, n_layers: int) -> None:
        self._bar = None
        if enabled and total:
            from tqdm import tqdm

            note = f", {cached} of {n_layers} layers cached" if cached else ""
            self._bar = tqdm(
                total=total, unit="chunk", desc=f"write scores{note}", dynamic_ncols=True
            )

    def step(self) -> None:
        if self._bar is not None:
            self._bar.update(1)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()


def cached_write_scores(
    lm: Any,
    layers: list[int],
    k: int,
    *,
    progress: bool = False,
    use_cache: bool = True,
    compute: Callable[..., dict[str, Any]] | None = None,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Write scores of ``layers`` (``{"layer_NNN.pos_val": ...}``) and what the cache did.

    Args:
        compute: computes one layer (default :func:`.scores.compute_layer`).

    Returns:
        ``(tensors, info)``, ``info`` = ``{"dir", "hits": [layers], "computed": [layers]}``.
    """

    from ..attribution.trace import model_weights

    compute = compute or compute_layer
    w = model_weights(lm)
    k = min(k, int(w.w_u.shape[0]))
    root = cache_dir() if use_cache else None
    got: dict[int, dict[str, Any]] = {}
    paths: dict[int, tuple[Path, str]] = {}
    if root is not None:
        base = model_key(w, k)
        for layer in layers:
            key = layer_key(w, layer, base)
            paths[layer] = (root / base[:24] / f"layer_{layer:03d}-{key[:24]}.safetensors", key)
            entry = read_entry(*paths[layer], lm.d_mlp, k)
            if entry is not None:
                got[layer] = entry
    todo = [layer for layer in layers if layer not in got]
    n_chunks = -(-int(w.w_u.shape[0]) // VOCAB_CHUNK)
    bar = _Bar(progress, n_chunks * len(todo), len(got), len(layers))
    try:
        span = value_span(w.w_u) if todo else None
        for layer in todo:
            got[layer] = compute(w, layer, lm.d_mlp, k, on_chunk=bar.step, w_u_span=span)
            if layer in paths:
                try:
                    write_entry(paths[layer][0], paths[layer][1], got[layer])
                except OSError as e:  # a read-only cache costs time, never the atlas
                    log.warning("cannot write the write-score cache %s: %s", paths[layer][0], e)
    finally:
        bar.close()
    if root is not None:
        log.info(
            "write scores: %d layers from %s, %d computed", len(got) - len(todo), root, len(todo)
        )
    out = {f"layer_{layer:03d}.{name}": got[layer][name] for layer in layers for name in NAMES}
    info = {
        "dir": None if root is None else str(root),
        "hits": [layer for layer in layers if layer not in todo],
        "computed": todo,
    }
    return out, info


def write_score_tensors(
    lm: Any, layers: list[int], k: int, *, progress: bool = False, cache: bool = True
) -> dict[str, Any]:
    """``{"layer_NNN.pos_val" [d, k] f32, ".pos_id" [d, k] i64, ".neg_val", ".neg_id"}``; layers
    already in the cache are read from it (``cache=False``: compute every layer)."""
    return cached_write_scores(lm, layers, k, progress=progress, use_cache=cache)[0]
