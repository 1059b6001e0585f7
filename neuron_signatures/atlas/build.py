"""Build an atlas: corpus → windows → the dump's capture path → on-device reduction → files.

1. Check the flags, the output folder and the corpus; tokenise and plan the windows
   (:mod:`.windows`); on ``--resume`` refuse an atlas of another model, corpus or parameters.
2. Load the model through :mod:`neuron_signatures.models` and cut the windows into length-sorted
   batches with :func:`neuron_signatures.capture.plan_batches` (right padding + attention mask).
3. Per batch, :func:`neuron_signatures.models.capture_hook_post` runs the body up to the last
   wanted layer (no logits) and every layer's activations are folded into its state on the
   device (:mod:`.reduce`); every ``checkpoint_every`` tokens the states are checkpointed.
4. At the end: the layer states, the write scores and the manifest (``complete: true``).

``batches=(lo, hi)`` builds a partial atlas of those batches of the plan; :func:`merge_atlases`
of partials covering every batch is byte-identical to one build of the whole corpus.
"""

from __future__ import annotations

import itertools
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import BadArgumentError
from ..models import EMBEDDED_NAME
from ..store.manifest import utc_now
from ..store.writable import check_writable
from . import store
from .corpus import CorpusSpec, check_corpus, iter_documents
from .plan import plan_manifest, reduce_params, resume_mismatch
from .windows import WindowPlan, plan_windows

log = logging.getLogger(__name__)


@dataclass
class AtlasConfig:
    """Everything a build needs; the CLI fills it from flags.

    Attributes:
        out_dir: the atlas folder to write.
        corpus: a ``.txt/.json/.jsonl/.parquet`` file, ``hf:<name>[:split]``, or ``None`` for the
            embedded fortune corpus.
        text_field: text field of JSON / Parquet / hf rows.
        paragraphs: ``.txt`` documents are blank-line separated (default: one per line).
        model_name, device, model_dtype, layers, batch_size, max_batch_tokens: as in ``dump``.
        ctx_len: window length in tokens, BOS included.
        max_tokens: corpus tokens to read (BOS excluded); ``None`` = the whole corpus.
        top_k: examples kept per neuron at each end (top-k and bottom-k).
        interval_samples: samples kept per (neuron, histogram bin).
        density_threshold: the second density counts activations above this value.
        seed: window shuffle and sampling priorities.
        include_bos: let BOS positions enter the statistics and examples.
        example_dtype: ``fp16`` or ``fp32`` for the stored example windows' activations.
        write_scores_k: top/bottom logits kept per neuron (0 = skip the write scores).
        checkpoint_every: checkpoint the states every this many forwarded tokens.
        batches: ``(lo, hi)``: build only these batches of the plan (a partial atlas).
        resume / overwrite: how to treat an existing atlas folder.
        progress: show a progress bar.
    """

    out_dir: Path
    corpus: str | None = None
    text_field: str = "text"
    paragraphs: bool = False
    model_name: str = EMBEDDED_NAME
    device: str | None = None
    model_dtype: str = "auto"
    layers: list[int] | None = None
    batch_size: int | None = None
    max_batch_tokens: int | None = None
    ctx_len: int = 64
    max_tokens: int | None = None
    top_k: int = 20
    interval_samples: int = 5
    density_threshold: float = 0.1
    seed: int = 0
    include_bos: bool = False
    example_dtype: str = "fp16"
    write_scores_k: int = 10
    checkpoint_every: int = 200_000
    batches: tuple[int, int] | None = None
    resume: bool = False
    overwrite: bool = False
    progress: bool = True


def check_config(cfg: AtlasConfig) -> None:
    """Refuse impossible flags before anything is read or written."""
    if cfg.resume and cfg.overwrite:
        raise BadArgumentError("--resume and --overwrite contradict each other: pick one")
    if cfg.max_tokens is not None and cfg.max_tokens < 1:
        raise BadArgumentError(f"--max_tokens must be a positive number, got {cfg.max_tokens}")
    if cfg.ctx_len < 2:
        raise BadArgumentError(f"--ctx_len must be at least 2 (BOS + one token), got {cfg.ctx_len}")
    positive = ("top_k", "interval_samples", "checkpoint_every")
    for name in (*positive, "batch_size", "max_batch_tokens"):
        value = getattr(cfg, name)
        if value is not None and value < 1:
            raise BadArgumentError(f"--{name} must be at least 1, got {value}")
    if cfg.write_scores_k < 0:
        raise BadArgumentError("--write_scores_k must be 0 (skip) or positive")
    if cfg.example_dtype not in ("fp16", "fp32"):
        raise BadArgumentError("--example_dtype must be fp16 or fp32")


def plan_corpus(cfg: AtlasConfig, spec: CorpusSpec, tokenizer: Any) -> WindowPlan:
    """The windows of ``cfg``'s corpus (one plan for a build, its parts and Ray units)."""
    return plan_windows(
        iter_documents(spec),
        spec,
        tokenizer,
        ctx_len=cfg.ctx_len,
        seed=cfg.seed,
        max_tokens=cfg.max_tokens,
    )


def build_atlas(
    cfg: AtlasConfig,
    *,
    load: Callable[..., Any] | None = None,
    on_batch: Callable[[int], None] | None = None,
) -> Path:
    """Build (or finish, with ``cfg.resume``) the atlas ``cfg.out_dir``; returns its folder.

    Args:
        load: ``load(tokenizer) -> LoadedModel`` override (tests pass an in-memory model).
        on_batch: called with the batch index after each batch (tests simulate a kill with it).
    """
    from .. import models

    t0 = time.perf_counter()
    check_config(cfg)
    root = Path(cfg.out_dir)
    old = store.check_target(root, resume=cfg.resume, overwrite=cfg.overwrite)
    check_writable(root)
    spec = CorpusSpec(cfg.corpus, cfg.text_field, cfg.paragraphs)
    check_corpus(spec)
    lm = load(None) if load else None
    from .reduce import update_kernel, warm_kernel
    from .run import reducer

    device = lm.device if lm else cfg.device or models.default_device()
    if reducer(device) is update_kernel:  # it loads while the corpus is read and the model loads
        dtype = lm.dtype if lm else models.resolve_model_dtype(cfg.model_dtype, device)
        warm_kernel(dtype)
    name = lm.name if lm else models.resolve_model_spec(cfg.model_name).name
    if old is not None and old["model"]["name"] != name:
        raise BadArgumentError(
            f"{root} is an atlas of {old['model']['name']}, not {name}: use another --out_dir "
            "or --overwrite"
        )
    if old is not None and old.get("complete"):
        log.warning("atlas %s is already complete: nothing to resume", root)
        return root
    tokenizer = lm.tokenizer if lm else models.load_tokenizer(cfg.model_name)
    plan = plan_corpus(cfg, spec, tokenizer)
    if old is not None:
        _refuse_mismatch(root, old, {"corpus": {"fingerprint": plan.fingerprint}})
    if lm is None:
        lm = models.load_model(cfg.model_name, cfg.device, cfg.model_dtype, tokenizer=tokenizer)
    manifest, batches = plan_manifest(cfg, spec, plan, lm)
    lo, hi = cfg.batches or (0, len(batches))
    if not 0 <= lo < hi <= len(batches):
        raise BadArgumentError(f"batches {lo}..{hi} out of range: the plan has {len(batches)}")
    manifest["progress"]["batch_ranges"] = [[lo, hi]]
    if old is not None:
        _refuse_mismatch(root, old, manifest)
        if old["progress"]["batch_ranges"] != manifest["progress"]["batch_ranges"]:
            raise BadArgumentError(
                f"cannot resume {root}: it covers batches {old['progress']['batch_ranges']}, "
                f"not {manifest['progress']['batch_ranges']}"
            )
    from .run import run_batches

    with store.Lock(root):
        if cfg.overwrite:
            store.clear(root)
        if old is None:
            write_static(root, plan, manifest, tokenizer)
        stats = run_batches(cfg, root, lm, plan, batches, manifest, (lo, hi), on_batch)
    stats["elapsed_s"] = round(time.perf_counter() - t0, 3)
    store.write_json(root / store.BUILD_LOG, {**stats, "created_at_utc": utc_now()})
    return root


def _refuse_mismatch(root: Path, old: dict[str, Any], new: dict[str, Any]) -> None:
    diff = resume_mismatch(old, new)
    if diff:
        raise BadArgumentError(
            f"cannot resume {root}: it was built with another setting ({diff}); use the same "
            "flags, another --out_dir, or --overwrite"
        )


def write_static(root: Path, plan: WindowPlan, manifest: dict[str, Any], tokenizer: Any) -> None:
    """Windows, documents and vocabulary, then the manifest (``complete: false``)."""
    import torch

    from ..store.atomic import atomic_write_bytes

    store.save_tensors(
        root / store.WINDOWS,
        {
            "tokens": torch.from_numpy(plan.tokens),
            "length": torch.from_numpy(plan.lengths),
            "doc": torch.from_numpy(plan.doc),
            "offset": torch.from_numpy(plan.offset),
        },
    )
    atomic_write_bytes(root / store.DOCUMENTS, documents_jsonl(plan.documents))
    vocab = tokenizer.convert_ids_to_tokens(list(range(len(tokenizer))))
    store.write_json(root / store.VOCAB, [t if isinstance(t, str) else "" for t in vocab])
    store.write_json(root / store.MANIFEST, manifest)


def documents_jsonl(documents: list[dict[str, Any]]) -> bytes:
    """One compact JSON object per line; ASCII escapes, so no string can hold a line break
    (U+2028 and U+0085 split lines for ``str.splitlines``)."""
    import json

    return b"".join(
        json.dumps(m, separators=(",", ":"), ensure_ascii=True).encode() + b"\n" for m in documents
    )


def merge_atlases(parts: list[Path], out_dir: Path, *, overwrite: bool = False) -> Path:
    """Merge partial atlases of one plan (disjoint batch ranges) into ``out_dir``.

    The result is byte-identical to one build over the union of their batches (every file but
    ``build.json``); it is complete when the ranges cover the whole plan. An output that is, holds
    or sits inside an input is refused (``overwrite`` would delete it before it is read); a merge
    that fails removes what it wrote.
    """
    import shutil

    if not parts:
        raise BadArgumentError("merge needs at least one partial atlas")
    _refuse_overlap(parts, Path(out_dir))
    manifests = [store.read_manifest(Path(p)) for p in parts]
    for p, m in zip(parts[1:], manifests[1:], strict=True):
        diff = resume_mismatch(manifests[0], m)
        if diff:
            raise BadArgumentError(f"cannot merge {p} with {parts[0]}: {diff}")
    ranges = sorted(tuple(r) for m in manifests for r in m["progress"]["batch_ranges"])
    for (_, a_hi), (b_lo, _) in itertools.pairwise(ranges):
        if b_lo < a_hi:
            raise BadArgumentError(
                "the partial atlases overlap (same batches twice): merge refused"
            )
    root = Path(out_dir)
    store.check_target(root, resume=False, overwrite=overwrite)
    check_writable(root)
    created = not root.exists()
    with store.Lock(root):
        try:
            store.clear(root)  # an --overwrite's old atlas, or what a killed merge left
            for name in (store.WINDOWS, store.DOCUMENTS, store.VOCAB):
                shutil.copyfile(Path(parts[0]) / name, root / name)
            write_merged([Path(q) for q in parts], manifests, root)
        except BaseException:
            store.clear(root)  # never a half-merged folder
            if created:
                shutil.rmtree(root, ignore_errors=True)
            raise
    store.write_json(root / store.BUILD_LOG, {"merged_from": [str(q) for q in parts]})
    return root


def _refuse_overlap(parts: list[Path], out: Path) -> None:
    """Refuse an output that is, holds or sits inside an input (paths resolved, symlinks too)."""
    o = out.resolve()
    for p in parts:
        q = Path(p).resolve()
        if o == q or o in q.parents or q in o.parents:
            how = "is" if o == q else "holds" if o in q.parents else "sits inside"
            raise BadArgumentError(
                f"merge output {out} {how} the input {p}: write the merge to a folder apart "
                "from every partial atlas"
            )


def write_merged(parts: list[Path], manifests: list[dict[str, Any]], out: Path) -> None:
    """Write into ``out`` the exact merge of the partial atlases ``parts`` (disjoint batches, in
    any order: the merge is associative and commutative): layers, write scores, then the
    manifest (complete when the batch ranges cover the plan). The static files are the caller's."""
    import shutil

    from .reduce import from_disk, merge, to_disk

    version = int(manifests[0]["format_version"])
    if version != store.FORMAT_VERSION:  # older sums and sampling priorities do not merge
        raise BadArgumentError(
            f"{parts[0]} is a version-{version} atlas: merging needs version-"
            f"{store.FORMAT_VERSION} parts; rebuild them with this version"
        )
    p = reduce_params(manifests[0])
    for layer in manifests[0]["layers"]:
        state = None
        for part in parts:
            s = from_disk(store.load_tensors(store.layer_file(part, layer)), p, "cpu", layer)
            state = s if state is None else merge(state, s, p)
        assert state is not None
        store.save_tensors(store.layer_file(out, layer), to_disk(state, p))
    scored = [q for q in parts if (q / store.WRITE_SCORES).is_file()]
    if scored:
        shutil.copyfile(scored[0] / store.WRITE_SCORES, out / store.WRITE_SCORES)
    ranges = sorted(tuple(r) for m in manifests for r in m["progress"]["batch_ranges"])
    manifest = dict(manifests[0])
    manifest["progress"] = merged_progress([m["progress"] for m in manifests], ranges)
    manifest["complete"] = manifest["progress"]["batch_ranges"] == [
        [0, manifest["params"]["n_batches"]]
    ]
    store.write_json(out / store.MANIFEST, manifest)


def merged_progress(progress: list[dict[str, Any]], ranges: list[tuple[int, ...]]) -> dict:
    joined: list[list[int]] = []
    for lo, hi in ranges:
        if joined and joined[-1][1] == lo:
            joined[-1][1] = hi
        else:
            joined.append([lo, hi])
    out = {
        key: int(np.sum([p[key] for p in progress])) for key in progress[0] if key != "batch_ranges"
    }
    return {"batch_ranges": joined, **out}
