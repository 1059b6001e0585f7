"""The atlas manifest: what was read, with which model and parameters, and how far it got.

Everything in it is deterministic (no dates, no device, no timings: those go to ``build.json``),
so two builds, a resumed build and a merge of partial builds write the same bytes. The
``model``, ``layers``, ``corpus``, ``windows``, ``params``, ``statistics`` and ``versions``
blocks are the atlas's identity: a resume or a merge with any of them different is refused.
"""

from __future__ import annotations

import hashlib
from typing import Any

from ..dump_plan import auto_batch_tokens, plan_batches
from ..errors import BadArgumentError
from ..models import HOOK_POST
from ..store.build import library_versions
from . import store
from .corpus import CorpusSpec
from .windows import WindowPlan

HIST_RULE = (
    "half-octave bins read off the float32 bits (sign, exponent, first mantissa bit): edges 0, "
    "±2^e and ±1.5*2^e for 2^lo_exp..2^hi_exp; bins at or above 0 are [e[i-1], e[i]), bins "
    "below 0 are (e[i-1], e[i]]; the outermost bins take everything beyond ±2^hi_exp"
)
SUM_RULE = (
    "per batch: float64 sums of x and x^2, truncated to multiples of 2^-64 and added exactly "
    "as four base-2^32 digits, most significant first ([d, 4] int64)"
)
HASH_RULE = "splitmix64(g xor splitmix64(seed * 0x9E3779B97F4A7C15 + 1)), g = window*ctx_len + pos"
_NOT_IDENTITY = {"complete", "progress"}


def plan_manifest(
    cfg: Any, spec: CorpusSpec, plan: WindowPlan, lm: Any
) -> tuple[dict[str, Any], list[list[int]]]:
    """The manifest of a new atlas (``complete: false``) and its batches of window indices."""
    from . import bins

    layers = sorted(set(cfg.layers)) if cfg.layers is not None else list(range(lm.n_layers))
    bad = [layer for layer in layers if not 0 <= layer < lm.n_layers]
    if bad or not layers:
        raise BadArgumentError(
            f"--layers {bad or '(empty)'} out of range: use 0..{lm.n_layers - 1}"
        )
    budget = cfg.max_batch_tokens or auto_batch_tokens(len(layers), lm.d_mlp)
    batches = window_batches(plan.lengths, cfg.batch_size, budget)
    corpus = {
        **{k: v for k, v in spec.describe().items()},
        "fingerprint": plan.fingerprint,
        "n_documents": len(plan.documents),
        "n_tokens": plan.n_corpus_tokens,
        "n_windows": plan.n_corpus_windows,
    }
    digest = hashlib.sha256(plan.tokens.tobytes() + plan.lengths.tobytes()).hexdigest()
    manifest: dict[str, Any] = {
        "format": store.FORMAT,
        "format_version": store.FORMAT_VERSION,
        "complete": False,
        "model": {
            "name": lm.name,
            "n_layers": lm.n_layers,
            "d_mlp": lm.d_mlp,
            "d_model": lm.d_model,
            "dtype": lm.dtype,
            "hook": HOOK_POST,
            "source": lm.source,
        },
        "layers": layers,
        "corpus": corpus,
        "windows": {
            "file": store.WINDOWS,
            "n_windows": plan.n_windows,
            "n_tokens": plan.n_tokens,
            "tokens_sha256": digest,
        },
        "params": {
            "ctx_len": cfg.ctx_len,
            "max_tokens": cfg.max_tokens,
            "top_k": cfg.top_k,
            "interval_samples": cfg.interval_samples,
            "density_threshold": cfg.density_threshold,
            "seed": cfg.seed,
            "include_bos": cfg.include_bos,
            "example_dtype": cfg.example_dtype,
            "write_scores_k": cfg.write_scores_k,
            "batch_size": cfg.batch_size,
            "max_batch_tokens": budget,
            "n_batches": len(batches),
            "sorted_by_length": True,
            "padding_side": "right",
            "logits_computed": False,
        },
        "statistics": {
            "histogram": {
                "lo_exp": bins.LO_EXP,
                "hi_exp": bins.HI_EXP,
                "n_bins": bins.n_bins(),
                "edges": bins.edges(),
                "rule": HIST_RULE,
            },
            "sums": SUM_RULE,
            "sample_priority": HASH_RULE,
        },
        "files": {
            "manifest": store.MANIFEST,
            "windows": store.WINDOWS,
            "documents": store.DOCUMENTS,
            "vocab": store.VOCAB,
            "layers": f"{store.LAYERS}/layer_NNN.safetensors",
            "write_scores": store.WRITE_SCORES if cfg.write_scores_k else None,
        },
        "progress": {"batch_ranges": [[0, len(batches)]]},
        "versions": library_versions(),
    }
    return manifest, batches


def window_batches(lengths: Any, batch_size: int | None, max_batch_tokens: int) -> list[list[int]]:
    """The dump's length-sorted batches of windows, each batch's windows in ascending order.

    With an automatic batch size, neighbouring batches are joined while the padded batch stays
    under ``max_batch_tokens``: the dump caps a batch at 64 prompts, which leaves batches of
    short windows (a corpus of short documents) much smaller than the token budget.
    """
    lengths = [int(n) for n in lengths]
    planned = plan_batches(lengths, batch_size=batch_size, max_batch_tokens=max_batch_tokens)
    out: list[list[int]] = []
    for b in planned:
        if out and batch_size is None:
            joined = out[-1] + b
            if len(joined) * max(lengths[i] for i in joined) <= max_batch_tokens:
                out[-1] = joined
                continue
        out.append(list(b))
    return [sorted(b) for b in out]


def reduce_params(manifest: dict[str, Any]) -> Any:
    """The :class:`~.reduce.ReduceParams` an atlas was built with."""
    from .reduce import ReduceParams

    p, h = manifest["params"], manifest["statistics"]["histogram"]
    return ReduceParams(
        d_mlp=int(manifest["model"]["d_mlp"]),
        ctx_len=int(p["ctx_len"]),
        top_k=int(p["top_k"]),
        samples=int(p["interval_samples"]),
        threshold=float(p["density_threshold"]),
        seed=int(p["seed"]),
        example_dtype=str(p["example_dtype"]),
        hist_exp=(int(h["lo_exp"]), int(h["hi_exp"])),
    )


def _identity(m: dict[str, Any], like: dict[str, Any]) -> dict[str, Any]:
    """``m`` restricted to the keys of ``like`` (recursively), without progress or paths."""
    out: dict[str, Any] = {}
    for key, sub in like.items():
        if key in _NOT_IDENTITY or (key == "source" and "fingerprint" in like):
            continue
        if key not in m:
            out[key] = None
        elif isinstance(sub, dict) and isinstance(m[key], dict) and key != "source":
            out[key] = _identity(m[key], sub)
        else:
            out[key] = m[key]
    return out


def resume_mismatch(old: dict[str, Any], new: dict[str, Any]) -> str | None:
    """The first identity field where ``old`` and ``new`` differ (only ``new``'s keys)."""
    return store.first_difference(_identity(old, new), _identity(new, new))
