"""The hook self-check's verdict, cached per model so a load pays the check once.

:func:`~.hooks.verify_hook_contract` boots a TransformerBridge and runs three forwards (about 3 s of
a 4 s load of Gemma 3 270M on 2 cores). Its answer depends only on the weights, the library code
and how the model runs, so it is kept in a small JSON file and reused while all of those are
unchanged:

1. the **key** names the model folder and fingerprints it: every top-level file's name, size and
   modification time (``st_mtime_ns``), the file a hub snapshot's link points to (a blob named by
   its content hash), and the sha256 of ``config.json``; then the versions of torch, transformers,
   transformer_lens and this package, :data:`CHECK_VERSION`, the dtype and the device;
2. the file is ``<checks dir>/<sha256 of the key>.json`` and holds the key itself; it is reused
   only when the stored key equals the current one and the verdict is ``pass``;
3. a check that fails writes nothing and removes a verdict of the same key (``--recheck_model``);
4. ``NEURON_SIGNATURES_RECHECK_MODEL=1`` (the CLI's ``--recheck_model``) runs the check anyway.

Why sizes and modification times, not a hash of the weights: hashing 1 GB of fp32 weights costs
1-2 s, the price the cache avoids; ``save_pretrained`` and a conversion write new files (new
mtimes), the same rule the GGUF conversion cache keys on. Safetensors headers alone would not do:
they hold names, shapes and offsets, identical for a fine-tuned copy of the same model.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import time
from collections.abc import Callable
from importlib import metadata
from pathlib import Path
from typing import Any

from .specs import LoadedModel, ModelSpec, cache_root

log = logging.getLogger(__name__)

CHECK_VERSION = 1  # bump when verify_hook_contract checks something new
RECHECK_ENV = "NEURON_SIGNATURES_RECHECK_MODEL"
CHECKS_ENV = "NEURON_SIGNATURES_MODEL_CHECKS"
_LIBRARIES = ("torch", "transformers", "transformer-lens")


def checks_dir() -> Path:
    """Where verdicts live: ``$NEURON_SIGNATURES_MODEL_CHECKS`` or ``<cache root>/model_checks``."""
    env = os.environ.get(CHECKS_ENV)
    return Path(env) if env else cache_root() / "model_checks"


def recheck_forced() -> bool:
    """Whether ``NEURON_SIGNATURES_RECHECK_MODEL`` asks for the check at every load."""
    return os.environ.get(RECHECK_ENV, "").strip().upper() in {"1", "ON", "YES", "TRUE"}


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def _folder_of(spec: ModelSpec, folder: str) -> Path | None:
    """The folder the weights were read from (a hub id: its snapshot in the local cache)."""
    if spec.kind != "hub":
        path = Path(folder)
        return path if path.is_dir() else None
    try:
        from huggingface_hub import try_to_load_from_cache

        hit = try_to_load_from_cache(spec.location, "config.json")
    except Exception:  # a malformed id or cache: no key, the check runs
        return None
    return Path(hit).parent if isinstance(hit, str) else None


def fingerprint(folder: Path) -> dict[str, Any]:
    """Name, size, mtime and link target of each top-level file, and the config's sha256."""
    files = []
    for entry in sorted(os.scandir(folder), key=lambda e: e.name):
        if entry.name.startswith(".") or not entry.is_file():
            continue
        st = entry.stat()  # follows a hub snapshot's link to its blob
        target = os.path.realpath(entry.path) if entry.is_symlink() else None
        files.append([entry.name, st.st_size, st.st_mtime_ns, target and Path(target).name])
    config = folder / "config.json"
    digest = hashlib.sha256(config.read_bytes()).hexdigest() if config.is_file() else None
    return {"folder": str(folder.resolve()), "files": files, "config_sha256": digest}


def verdict_key(spec: ModelSpec, folder: str, device: str, dtype: str) -> dict[str, Any] | None:
    """The key a verdict is stored under, or ``None`` when the weights have no folder to
    fingerprint (an in-memory model: the check runs at every load)."""
    from .. import __version__

    path = _folder_of(spec, folder)
    if path is None:
        return None
    dev = device
    if device.startswith("cuda"):
        import torch

        dev = f"{device} ({torch.cuda.get_device_name(torch.device(device))})"
    return {
        "check_version": CHECK_VERSION,
        "model": fingerprint(path),
        "versions": {
            **{lib: _version(lib) for lib in _LIBRARIES},
            "neuron-signatures": __version__,
        },
        "dtype": dtype,
        "device": dev,
    }


def verdict_path(key: dict[str, Any]) -> Path:
    blob = json.dumps(key, sort_keys=True).encode()
    return checks_dir() / f"{hashlib.sha256(blob).hexdigest()[:24]}.json"


def cached_pass(key: dict[str, Any]) -> bool:
    """Whether a ``pass`` verdict is stored under exactly this key."""
    try:
        got = json.loads(verdict_path(key).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(got, dict) and got.get("key") == key and got.get("verdict") == "pass"


def _write(key: dict[str, Any], seconds: float) -> None:
    path = verdict_path(key)
    record = {
        "verdict": "pass",
        "checked_at_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "check_s": round(seconds, 3),
        "key": key,
    }
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(record, indent=1, sort_keys=True) + "\n", encoding="utf-8")
        os.replace(tmp, path)
    except OSError as e:  # a read-only cache: the check simply runs again next time
        log.warning("cannot store the model check's verdict in %s (%s)", path.parent, e)


def ensure_checked(
    lm: LoadedModel, key: dict[str, Any] | None, check: Callable[[LoadedModel], None]
) -> bool:
    """Run ``check(lm)`` unless a ``pass`` verdict is stored under ``key``; store a pass.

    Returns:
        Whether the check ran.

    Raises:
        HookContractError: from ``check``; nothing is stored then, and a stored pass of the same
            key is removed.
    """
    if key is not None and not recheck_forced() and cached_pass(key):
        log.info("hook self-check of %s: cached pass (%s)", lm.name, verdict_path(key))
        return False
    t0 = time.perf_counter()
    try:
        check(lm)
    except Exception:
        if key is not None:
            with contextlib.suppress(OSError):
                verdict_path(key).unlink(missing_ok=True)
        raise
    if key is not None:
        _write(key, time.perf_counter() - t0)
    return True
