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


def model_shape(model_name: str) -> tuple[int, int]:
    """``(n_layers, d_mlp)`` for a known model, a local HF folder or a hub config (no weights)."""
    from .models import KNOWN_MODELS, resolve_model_spec

    spec = resolve_model_spec(model_name)
    if spec.name in KNOWN_MODELS:
        km = KNOWN_MODELS[spec.name]
        return km.n_layers, km.d_mlp
    if spec.kind == "local":
        cfg = json.loads((Path(spec.location) / "config.json").read_text())
        cfg = cfg.get("text_config", cfg)
        return int(cfg["num_hidden_layers"]), int(cfg["intermediate_size"])
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
