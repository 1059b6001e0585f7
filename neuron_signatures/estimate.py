"""Storage estimates: bytes per token, per prompt and per run, from a model's shape."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from .errors import ModelLoadError
from .store.manifest import DTYPE_BYTES


@dataclass(frozen=True)
class Estimate:
    """Storage for ``n_prompts`` prompts of ``seq_len`` tokens, all layers, one save dtype."""

    model_name: str
    n_layers: int
    d_mlp: int
    save_dtype: str
    seq_len: int
    n_prompts: int

    @property
    def bytes_per_token(self) -> int:
        return self.n_layers * self.d_mlp * DTYPE_BYTES[self.save_dtype]

    @property
    def bytes_per_prompt(self) -> int:
        return self.bytes_per_token * self.seq_len

    @property
    def bytes_per_run(self) -> int:
        return self.bytes_per_prompt * self.n_prompts


def known_shape(model_name: str) -> tuple[int, int] | None:
    """``(n_layers, d_mlp)`` without loading weights or touching the network, or None.

    Read from the model's ``config.json`` when it is on disk (a local folder, a converted GGUF, a
    hub model in the Hugging Face cache), else from the table of known models.

    Raises:
        ModelLoadError: ``model_name`` is none of the model spec kinds (see ``resolve_model_spec``).
    """
    from .models import KNOWN_MODELS, resolve_model_spec

    spec = resolve_model_spec(model_name)
    config = _config_on_disk(spec.kind, spec.location)
    if config is not None:
        try:
            cfg = json.loads(config.read_text(encoding="utf-8"))
            cfg = cfg.get("text_config", cfg)
            return int(cfg["num_hidden_layers"]), int(cfg["intermediate_size"])
        except (OSError, ValueError, KeyError, TypeError):
            pass
    if spec.name in KNOWN_MODELS:
        km = KNOWN_MODELS[spec.name]
        return km.n_layers, km.d_mlp
    return None


def _config_on_disk(kind: str, location: str) -> Path | None:
    if kind == "local":
        return Path(location) / "config.json"
    if kind == "embedded":
        from .models import cache_root

        folder = cache_root() / location
    elif kind == "gguf":
        from .models.convert import _gguf_cache_dir

        folder = _gguf_cache_dir(Path(location))
    elif kind == "hub":
        try:
            from huggingface_hub import try_to_load_from_cache

            cached = try_to_load_from_cache(location, "config.json")
        except Exception:  # an odd cache layout must not stop a dump: fall back
            return None
        return Path(cached) if isinstance(cached, str) else None
    else:
        return None
    return folder / "config.json" if (folder / ".complete").is_file() else None


def model_shape(model_name: str) -> tuple[int, int]:
    """``(n_layers, d_mlp)`` for a known model, a local HF folder or a hub config (no weights)."""
    shape = known_shape(model_name)
    if shape is not None:
        return shape
    from .models import resolve_model_spec

    spec = resolve_model_spec(model_name)
    try:
        from transformers import AutoConfig

        cfg = AutoConfig.from_pretrained(spec.location)
        cfg = cfg.get_text_config() if hasattr(cfg, "get_text_config") else cfg
        return int(cfg.num_hidden_layers), int(cfg.intermediate_size)
    except (OSError, ValueError) as e:
        raise ModelLoadError(
            f"cannot read the config of {model_name} ({type(e).__name__}): give a known model "
            "(`neuron-signatures models`), a local folder, or network access"
        ) from None


def human_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.2f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1024
    return f"{n:.2f} TiB"


def estimate_table(model_name: str, seq_len: int, n_prompts: int) -> list[Estimate]:
    """One :class:`Estimate` per save dtype."""
    n_layers, d_mlp = model_shape(model_name)
    return [Estimate(model_name, n_layers, d_mlp, dt, seq_len, n_prompts) for dt in DTYPE_BYTES]
