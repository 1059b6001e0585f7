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
        from .models.specs import gguf_cache_dir

        folder = gguf_cache_dir(Path(location))
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


# --- atlas estimates -------------------------------------------------------------------------
# Byte sizes follow neuron_signatures.atlas.reduce.new_state (the device state) and
# reduce.to_disk (the layer files); tests/test_estimate_atlas.py checks them against both.
I64, F32, I32 = 8, 4, 4
EXAMPLE_BYTES = {"fp16": 2, "fp32": 4}
ATLAS_N_BINS = 100  # bins.n_bins() for the default half-octave range 2^-14..2^10
# Assumed dense bf16 peaks (vendor spec sheets, no sparsity) and the utilisation they are taken
# at: the forward is ~2 FLOPs per body parameter per token; short windows on a small model keep
# the GPU far from its peak, so 30% is assumed. These are assumptions, not measurements.
GPU_BF16_TFLOPS = {"A100 (SXM, 80 GB)": 312.0, "H100 (SXM)": 989.0, "H200": 989.0}
ASSUMED_MFU = 0.30


@dataclass(frozen=True)
class AtlasEstimate:
    """Device memory, disk size and forward time of an atlas of ``n_tokens`` corpus tokens."""

    model_name: str
    n_layers: int
    d_mlp: int
    d_model: int | None
    n_tokens: int
    ctx_len: int = 64
    top_k: int = 20
    samples: int = 5
    example_dtype: str = "fp16"
    write_scores_k: int = 10
    n_bins: int = ATLAS_N_BINS

    @property
    def n_neurons(self) -> int:
        return self.n_layers * self.d_mlp

    @property
    def examples_bytes(self) -> int:
        """Top-k and bottom-k example windows' activations of one neuron."""
        return 2 * self.top_k * self.ctx_len * EXAMPLE_BYTES[self.example_dtype]

    @property
    def state_bytes_per_neuron(self) -> int:
        """``reduce.new_state`` per neuron: sums, counts, min/max, histogram, ranked lists
        (int64 key + int64 g + window), reservoirs (int64 hash + int64 g + float32 value)."""
        # exact sums (7 + 13 + 19 + 25 digits, atlas.exact.LAYOUT), 3 counts, min, max, salt
        fixed = 64 * I64 + 3 * I64 + F32 + F32 + I64
        ranked = 2 * self.top_k * (I64 + I64)
        res = self.n_bins * self.samples * (I64 + I64 + F32)
        return fixed + self.n_bins * I64 + ranked + self.examples_bytes + res

    @property
    def disk_bytes_per_neuron(self) -> int:
        """``reduce.to_disk`` per neuron: keys become float32 values, reservoir hashes dropped."""
        fixed = 64 * I64 + 3 * I64 + F32 + F32
        ranked = 2 * self.top_k * (F32 + I64)
        res = self.n_bins * self.samples * (I64 + F32)
        return fixed + self.n_bins * I64 + ranked + self.examples_bytes + res

    @property
    def n_windows(self) -> int:
        return -(-self.n_tokens // (self.ctx_len - 1))

    @property
    def device_bytes(self) -> int:
        return self.n_neurons * self.state_bytes_per_neuron

    @property
    def layer_files_bytes(self) -> int:
        return self.n_neurons * self.disk_bytes_per_neuron

    @property
    def windows_bytes(self) -> int:
        """``windows.safetensors``: int32 tokens ``[W, ctx_len]`` and length, int64 doc, offset."""
        return self.n_windows * (self.ctx_len * I32 + I32 + 2 * I64)

    @property
    def write_scores_bytes(self) -> int:
        return self.n_neurons * 2 * self.write_scores_k * (F32 + I64)

    @property
    def disk_bytes(self) -> int:
        return self.layer_files_bytes + self.windows_bytes + self.write_scores_bytes

    @property
    def forward_tokens(self) -> int:
        """Tokens forwarded: the corpus tokens plus one BOS per window."""
        return self.n_tokens + self.n_windows

    @property
    def body_params(self) -> int | None:
        """Approximate body parameters ``n_layers * (3 d_model d_mlp + 4 d_model^2)`` (GeGLU MLP
        plus full-width attention; grouped-query attention makes the true count smaller)."""
        if self.d_model is None:
            return None
        return self.n_layers * (3 * self.d_model * self.d_mlp + 4 * self.d_model**2)

    def gpu_hours(self) -> dict[str, tuple[float, float]]:
        """``{gpu: (assumed tokens/s, hours)}`` of the forward at ``ASSUMED_MFU`` of bf16 peak."""
        params = self.body_params
        if params is None:
            return {}
        out = {}
        for gpu, tflops in GPU_BF16_TFLOPS.items():
            tok_s = tflops * 1e12 * ASSUMED_MFU / (2 * params)
            out[gpu] = (tok_s, self.forward_tokens / tok_s / 3600)
        return out


def atlas_estimate(model_name: str, n_tokens: int, **params: object) -> AtlasEstimate:
    """:class:`AtlasEstimate` for a model spec (shape from config or the known-model table)."""
    from .models import KNOWN_MODELS, resolve_model_spec

    n_layers, d_mlp = model_shape(model_name)
    km = KNOWN_MODELS.get(resolve_model_spec(model_name).name)
    d_model = km.d_model if km is not None else None
    return AtlasEstimate(model_name, n_layers, d_mlp, d_model, n_tokens, **params)  # type: ignore[arg-type]
