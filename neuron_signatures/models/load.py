"""Loading: transformers model + tokenizer, checked once per model, the bridge booted lazily."""

from __future__ import annotations

import contextlib
import copy
import functools
import logging
import warnings
from collections.abc import Iterator
from typing import Any

from ..errors import ModelLoadError
from .convert import local_folder
from .hooks import verify_hook_contract
from .specs import (
    EMBEDDED_NAME,
    LoadedModel,
    ModelSpec,
    default_device,
    hub_offline_reason,
    resolve_model_dtype,
    resolve_model_spec,
    torch_dtype,
)
from .verdict import ensure_checked, verdict_key

_TOKEN = (
    "gated Gemma models need an accepted license and a token: `huggingface-cli login` or HF_TOKEN"
)
_OTHERS = f"or pass a local folder / .gguf file, or the embedded model {EMBEDDED_NAME}"


def _hub_error(spec: ModelSpec, e: Exception, offline: str | None) -> ModelLoadError:
    if offline:
        return ModelLoadError(
            f"cannot load {spec.name}: the Hugging Face hub is out of reach ({offline}) and the "
            f"model is not in the local Hugging Face cache: connect to the network ({_TOKEN}), "
            + _OTHERS
        )
    reason = str(e).strip().splitlines()[0][:160] if str(e).strip() else type(e).__name__
    return ModelLoadError(
        f"cannot load {spec.name} from the Hugging Face hub ({reason}): check the id ({_TOKEN}), "
        + _OTHERS
    )


@contextlib.contextmanager
def _quiet_hub() -> Iterator[None]:
    """Silence huggingface_hub / transformers logs and warnings (one line per retry, twice)
    while a hub id resolves: a failure becomes one ModelLoadError line."""
    loggers = [logging.getLogger(n) for n in ("huggingface_hub", "transformers")]
    levels = [lg.level for lg in loggers]
    try:
        for lg in loggers:
            lg.setLevel(logging.ERROR)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)


def _from_pretrained(cls: Any, spec: ModelSpec, offline: str | None, **kwargs: Any) -> Any:
    """``cls.from_pretrained`` of a spec; a hub id is read from the local cache only when the
    hub is out of reach (``offline``), quietly."""
    if spec.kind != "hub":
        return cls.from_pretrained(local_folder(spec), **kwargs)
    try:
        with _quiet_hub():
            return cls.from_pretrained(spec.location, local_files_only=bool(offline), **kwargs)
    except (OSError, ValueError) as e:
        raise _hub_error(spec, e, offline) from None


def _offline(spec: ModelSpec) -> str | None:
    return hub_offline_reason() if spec.kind == "hub" else None


def load_tokenizer(name: str) -> Any:
    """Load only the tokenizer (fast): prompts are validated before the model loads."""
    spec = resolve_model_spec(name)
    return _load_tokenizer(spec, _offline(spec))


def _load_tokenizer(spec: ModelSpec, offline: str | None) -> Any:
    from transformers import AutoTokenizer

    try:
        return _from_pretrained(AutoTokenizer, spec, offline)
    except (OSError, ValueError) as e:
        raise ModelLoadError(f"cannot load the tokenizer of {spec.name}: {e}") from None


def load_model(
    name: str, device: str | None = None, dtype: str = "auto", tokenizer: Any = None
) -> LoadedModel:
    """Load a model spec through transformers and wrap it with TransformerBridge.

    The weights are frozen (``requires_grad_(False)``): attribution only needs activation
    gradients, and parameter gradients cost 3× the time and GBs of memory.
    """
    spec = resolve_model_spec(name)
    local_folder(spec)  # convert a .gguf / the embedded model before anything else
    import torch
    from transformers import AutoModelForCausalLM
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()

    device = device or default_device()
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ModelLoadError("--device cuda was asked for but no GPU is visible: use --device cpu")
    dtype = resolve_model_dtype(dtype, device)
    offline = _offline(spec)
    if tokenizer is None:
        tokenizer = _load_tokenizer(spec, offline)
    try:
        hf = _from_pretrained(AutoModelForCausalLM, spec, offline, dtype=torch_dtype(dtype))
    except (OSError, ValueError) as e:
        raise ModelLoadError(f"cannot load model {name}: {e}") from None
    key = verdict_key(spec, local_folder(spec), device, dtype)
    return wrap_hf_model(
        hf, tokenizer, name=spec.name, spec=spec, device=device, dtype=dtype, check_key=key
    )


def _mark_bos(tokenizer: Any) -> None:
    """Say ``add_bos_token=True`` on a tokenizer that already prepends BOS (Gemma's do).

    Booting a bridge otherwise reloads the whole tokenizer from disk only to set that flag
    (``get_tokenizer_with_bos``: 2.5 s of a 6 s load for a 262k vocabulary). The flag is set only
    when encoding already starts with BOS, so no encoding changes.
    """
    bos = getattr(tokenizer, "bos_token_id", None)
    init = getattr(tokenizer, "init_kwargs", None)
    if bos is None or not isinstance(init, dict) or init.get("add_bos_token"):
        return
    try:
        ids = tokenizer("a")["input_ids"]
    except Exception:  # an odd tokenizer: leave it to the bridge
        return
    if ids and ids[0] == bos:
        tokenizer.add_bos_token = True
        init["add_bos_token"] = True


def wrap_hf_model(
    hf: Any,
    tokenizer: Any,
    *,
    name: str,
    spec: ModelSpec | None = None,
    device: str = "cpu",
    dtype: str = "fp32",
    check_key: dict[str, Any] | None = None,
) -> LoadedModel:
    """Wrap an in-memory HF causal LM (used by tests too) and run the hook self-check.

    ``hf`` itself is kept as the lean capture model (see :mod:`.hooks`); the TransformerBridge
    wraps a twin sharing its weights and boots on first use. The self-check boots it, unless a
    pass is stored under ``check_key`` (see :mod:`.verdict`; ``None``: always check). Do not run
    or modify ``hf`` elsewhere.
    """
    hf = hf.to(device).eval()
    hf.requires_grad_(False)
    if not getattr(hf.config, "architectures", None):  # configs built in code carry none
        hf.config.architectures = [type(hf).__name__]
    cfg = hf.config.get_text_config() if hasattr(hf.config, "get_text_config") else hf.config
    lm = LoadedModel(
        name=name,
        spec=spec or ModelSpec(name, "memory", name),
        boot_bridge=functools.partial(_boot_bridge, hf, tokenizer, name, device, dtype),
        tokenizer=tokenizer,
        n_layers=int(cfg.num_hidden_layers),
        d_mlp=int(cfg.intermediate_size),
        d_model=int(cfg.hidden_size),
        device=device,
        dtype=dtype,
        plain_model=hf,
        source={
            "kind": (spec.kind if spec else "memory"),
            "location": (spec.location if spec else name),
            "architecture": type(hf).__name__,
            "revision": getattr(hf.config, "_commit_hash", None),
            "vocab_size": int(cfg.vocab_size),
            "d_model": int(cfg.hidden_size),
        },
    )
    ensure_checked(lm, check_key, verify_hook_contract)
    return lm


def _boot_bridge(hf: Any, tokenizer: Any, name: str, device: str, dtype: str) -> Any:
    """A TransformerBridge around a twin of ``hf`` that shares every parameter and buffer.

    Boot rewrites the modules of the model it wraps and forces eager attention: booting a twin
    keeps ``hf`` untouched for the lean capture.
    """
    from transformer_lens.model_bridge import TransformerBridge

    twin = copy.deepcopy(hf, {id(t): t for t in (*hf.parameters(), *hf.buffers())})
    _mark_bos(tokenizer)
    bridge = TransformerBridge.boot_transformers(
        name, hf_model=twin, tokenizer=tokenizer, device=device, dtype=torch_dtype(dtype)
    )
    bridge.requires_grad_(False)
    return bridge
