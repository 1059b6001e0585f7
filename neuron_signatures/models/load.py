"""Loading: transformers model + tokenizer, wrapped with TransformerBridge and checked."""

from __future__ import annotations

from typing import Any

from ..errors import ModelLoadError
from .convert import local_folder
from .hooks import verify_hook_contract
from .specs import (
    EMBEDDED_NAME,
    LoadedModel,
    ModelSpec,
    default_device,
    resolve_model_dtype,
    resolve_model_spec,
    torch_dtype,
)


def _hub_error(spec: ModelSpec, e: Exception) -> ModelLoadError:
    reason = str(e).strip().splitlines()[0][:160] if str(e).strip() else type(e).__name__
    return ModelLoadError(
        f"cannot load {spec.name} from the Hugging Face hub ({reason}): it needs network and, for "
        "gated Gemma models, an accepted license plus a token (`huggingface-cli login` or "
        "HF_TOKEN); "
        f"or pass a local folder / .gguf file, or the embedded model {EMBEDDED_NAME}"
    )


def load_tokenizer(name: str) -> Any:
    """Load only the tokenizer (fast): prompts are validated before the model loads."""
    spec = resolve_model_spec(name)
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(local_folder(spec))
    except (OSError, ValueError) as e:
        if spec.kind == "hub":
            raise _hub_error(spec, e) from None
        raise ModelLoadError(f"cannot load the tokenizer of {name}: {e}") from None


def load_model(
    name: str, device: str | None = None, dtype: str = "auto", tokenizer: Any = None
) -> LoadedModel:
    """Load a model spec through transformers and wrap it with TransformerBridge.

    The weights are frozen (``requires_grad_(False)``): attribution only needs activation
    gradients, and parameter gradients cost 3× the time and GBs of memory.
    """
    spec = resolve_model_spec(name)
    folder = local_folder(spec)
    import torch
    from transformers import AutoModelForCausalLM
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()

    device = device or default_device()
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ModelLoadError("--device cuda was asked for but no GPU is visible: use --device cpu")
    dtype = resolve_model_dtype(dtype, device)
    if tokenizer is None:
        tokenizer = load_tokenizer(name)
    try:
        hf = AutoModelForCausalLM.from_pretrained(folder, dtype=torch_dtype(dtype))
    except (OSError, ValueError) as e:
        if spec.kind == "hub":
            raise _hub_error(spec, e) from None
        raise ModelLoadError(f"cannot load model {name}: {e}") from None
    return wrap_hf_model(hf, tokenizer, name=spec.name, spec=spec, device=device, dtype=dtype)


def wrap_hf_model(
    hf: Any,
    tokenizer: Any,
    *,
    name: str,
    spec: ModelSpec | None = None,
    device: str = "cpu",
    dtype: str = "fp32",
) -> LoadedModel:
    """Boot a TransformerBridge around an in-memory HF causal LM (used by tests too).

    The bridge replaces modules of ``hf`` and forces eager attention: never reuse ``hf`` elsewhere.
    """
    from transformer_lens.model_bridge import TransformerBridge

    hf = hf.to(device).eval()
    hf.requires_grad_(False)
    if not getattr(hf.config, "architectures", None):  # configs built in code carry none
        hf.config.architectures = [type(hf).__name__]
    bridge = TransformerBridge.boot_transformers(
        name, hf_model=hf, tokenizer=tokenizer, device=device, dtype=torch_dtype(dtype)
    )
    bridge.requires_grad_(False)
    cfg = hf.config.get_text_config() if hasattr(hf.config, "get_text_config") else hf.config
    lm = LoadedModel(
        name=name,
        spec=spec or ModelSpec(name, "memory", name),
        bridge=bridge,
        tokenizer=tokenizer,
        n_layers=int(cfg.num_hidden_layers),
        d_mlp=int(cfg.intermediate_size),
        d_model=int(cfg.hidden_size),
        device=device,
        dtype=dtype,
        source={
            "kind": (spec.kind if spec else "memory"),
            "location": (spec.location if spec else name),
            "architecture": type(hf).__name__,
            "revision": getattr(hf.config, "_commit_hash", None),
            "vocab_size": int(cfg.vocab_size),
            "d_model": int(cfg.hidden_size),
        },
    )
    verify_hook_contract(lm)
    return lm
