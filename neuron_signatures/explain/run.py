"""``explain_atlas``: explain and score every neuron of an atlas's layers, resumable per layer.

1. Open the atlas, check its windows and the layers asked for.
2. Lock ``<atlas>/explanations`` (:class:`.output.FolderLock`: a second run on the same atlas is
   refused) and prepare it (:func:`.output.prepare`): new, cleared or resumed.
3. Draw the random windows (seeded) and run the score-time forward once for every layer still
   to do (:mod:`.forward`).
4. Per layer: choose the parameters on the train split's validation slice, explain and score
   (:mod:`.layer`), write ``layers/layer_NNN.jsonl`` atomically.
5. Mark the manifest complete with every layer's chosen parameters; timings go to ``run.json``.
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..atlas import Atlas, open_atlas
from ..atlas import store as atlas_store
from ..errors import BadArgumentError
from . import llm_run, output
from .forward import pick_random_windows, score_time_forward
from .layer import (
    CONTEXT_MIN_COUNT,
    CONTEXT_MIN_GAIN,
    CONTEXTS,
    GRID_PRIOR,
    GRID_TOP_TOKENS,
    explain_and_score_layer,
)
from .llm_run import LLMExplainer, LLMSettings
from .split import read_layer, read_windows

log = logging.getLogger(__name__)

PAUSE_ENV = "NEURON_SIGNATURES_EXPLAIN_PAUSE_AFTER_LAYERS"  # test hook, see _pause
EXPLAINERS = ("token-lookup", "llm")
SPLIT = (
    "train: top examples of even rank, bottom examples of even rank, every interval-reservoir "
    "sample; held-out: top examples of odd rank (bottom ones for the negative side) not in a "
    "train window, and the random windows not among the neuron's example windows, less the "
    "neuron's reservoir tokens"
)


@dataclass
class ExplainConfig:
    """Settings of one ``explain`` run.

    Attributes:
        atlas: the atlas folder.
        layers: layers to explain (``None``: every layer of the atlas).
        resume / overwrite: finish an interrupted run / replace an existing one.
        n_random_tokens: counted tokens of the random windows (the score-time forward).
        top_tokens: tokens kept per explanation (the lookup table's size; the rendered line
            names the first 3); ``None``: chosen per layer on the train split's validation
            slice from :data:`.layer.GRID_TOP_TOKENS`.
        prior: tokens are ranked by ``sum / (count + prior)`` (see
            :func:`.lookup.explain_layer`); ``None``: chosen per layer with ``top_tokens``
            from :data:`.layer.GRID_PRIOR` (never on the held-out data).
        seed: seeds the random windows and the floors' derangements.
        batch_size: windows per forward batch.
        device: the forward's device (``None``: auto).
        explainer: ``token-lookup`` (offline, into ``explanations/``) or ``llm`` (an
            OpenAI-compatible server, into ``explanations-llm/``, see :mod:`.llm_run`).
        llm: the LLM explainer's settings (``explainer="llm"`` only).
    """

    atlas: Path
    layers: list[int] | None = None
    resume: bool = False
    overwrite: bool = False
    n_random_tokens: int = 4096
    top_tokens: int | None = None
    prior: float | None = None
    seed: int = 0
    batch_size: int = 16
    device: str | None = None
    explainer: str = "token-lookup"
    llm: LLMSettings | None = None


def _layers(atlas: Atlas, layers: list[int] | None) -> list[int]:
    if layers is None:
        return list(atlas.layers)
    missing = sorted(set(layers) - set(atlas.layers))
    if missing:
        raise BadArgumentError(
            f"--layers {missing} not in the atlas {atlas.root} (it has layers {atlas.layers})"
        )
    return sorted(set(layers))


def _check(cfg: ExplainConfig) -> None:
    if cfg.n_random_tokens < 1:
        raise BadArgumentError("--n_random_tokens must be at least 1 (e.g. 4096)")
    if cfg.top_tokens is not None and cfg.top_tokens < 1:
        raise BadArgumentError("--top_tokens must be at least 1 (e.g. 32)")
    if cfg.prior is not None and not cfg.prior >= 0:
        raise BadArgumentError("--prior must be 0 or more (e.g. 3)")
    if cfg.batch_size < 1:
        raise BadArgumentError("--batch_size must be at least 1 (e.g. 16)")
    if cfg.explainer not in EXPLAINERS:
        raise BadArgumentError(f"--explainer must be one of {EXPLAINERS}, got {cfg.explainer!r}")
    if cfg.explainer == "llm":
        llm_run.check(cfg.llm or LLMSettings())


def explain_atlas(cfg: ExplainConfig, load: Callable[[Atlas], Any] | None = None) -> Path:
    """Explain and score (module doc); returns the explanations folder.

    ``load(atlas)`` returns the model for the score-time forward (default: the atlas's model).
    With ``explainer="llm"`` the server is probed before anything is written (an unreachable
    server or an unset key variable raises and leaves every file as it was).
    """
    _check(cfg)
    atlas = open_atlas(cfg.atlas)
    win = read_windows(atlas)
    layers = _layers(atlas, cfg.layers)
    expl = LLMExplainer(cfg.llm or LLMSettings(), atlas.root) if cfg.explainer == "llm" else None
    try:
        return _run(cfg, atlas, win, layers, load, expl)
    finally:
        if expl is not None:
            expl.close()


def _run(
    cfg: ExplainConfig,
    atlas: Atlas,
    win: Any,
    layers: list[int],
    load: Callable[[Atlas], Any] | None,
    expl: LLMExplainer | None,
) -> Path:
    out = atlas.root / (output.FOLDER if expl is None else llm_run.FOLDER)
    with output.FolderLock(out):
        return _run_locked(cfg, atlas, win, layers, load, expl, out)


def _grids(cfg: ExplainConfig) -> tuple[tuple[int, ...], tuple[float, ...]]:
    """The ``(top_tokens, prior)`` grids the validation slice chooses from (a given flag fixes
    its value)."""
    ks = GRID_TOP_TOKENS if cfg.top_tokens is None else (cfg.top_tokens,)
    priors = GRID_PRIOR if cfg.prior is None else (float(cfg.prior),)
    return ks, priors


def _run_locked(
    cfg: ExplainConfig,
    atlas: Atlas,
    win: Any,
    layers: list[int],
    load: Callable[[Atlas], Any] | None,
    expl: LLMExplainer | None,
    out: Path,
) -> Path:
    wins = pick_random_windows(win.lengths - win.start, cfg.n_random_tokens, cfg.seed)
    ks, priors = _grids(cfg)
    explainer: dict[str, Any] = {
        "name": "token-lookup",
        "top_tokens": list(ks),
        "prior": list(priors),
        "chosen_on": "validation slice of the train split (see split.py), per layer",
        "contexts": {
            "previous_token": True,
            "max": CONTEXTS,
            "min_count": CONTEXT_MIN_COUNT,
            "min_validation_gain": CONTEXT_MIN_GAIN,
        },
    }
    manifest = {
        "format": output.FORMAT,
        "format_version": output.FORMAT_VERSION,
        "atlas": {
            "model": atlas.model_name,
            "tokens_seen": atlas.tokens_seen,
            "manifest_sha256": hashlib.sha256(
                (atlas.root / atlas_store.MANIFEST).read_bytes()
            ).hexdigest(),
        },
        "params": {
            "explainer": explainer if expl is None else expl.params(),
            "scorer": "correlation (top_and_random, random_only), float64, floors",
            "seed": cfg.seed,
            "n_random_tokens": cfg.n_random_tokens,
            "batch_size": cfg.batch_size,
            "layers": layers,
        },
        "split": SPLIT,
        "random_windows": wins.tolist(),
    }
    action = output.check_target(out, manifest, resume=cfg.resume, overwrite=cfg.overwrite)
    todo = layers
    if action == "resume":
        todo = [
            layer
            for layer in layers
            if not output.layer_path(out, layer).is_file()
            or (expl is not None and llm_run.failed(out, layer))
        ]
    timings: dict[str, Any] = {"layers_done_before": len(layers) - len(todo)}
    lm = None
    if todo:  # the model loads before anything is cleared: a failed load loses nothing
        t = time.perf_counter()
        lm = (load or _load_model(cfg.device))(atlas)
        timings["load_s"] = round(time.perf_counter() - t, 3)
    output.prepare(out, manifest, action)
    if lm is not None:
        t = time.perf_counter()
        rnd = score_time_forward(lm, win, wins, todo, cfg.batch_size)
        timings["forward_s"] = round(time.perf_counter() - t, 3)
        timings["device"], timings["dtype"] = str(lm.device), str(getattr(lm, "dtype", ""))
        del lm
        vocab = atlas.vocab
        t = time.perf_counter()
        for n, layer in enumerate(todo, 1):
            arr = read_layer(atlas, layer)
            if expl is None:
                recs, tables, choice = explain_and_score_layer(
                    arr, win, rnd, vocab, cfg.seed, ks, priors
                )
                output.write_layer(out, layer, recs, tables, choice.as_dict())
            else:
                llm_run.write_records(
                    out, layer, expl.explain_layer(arr, win, rnd, vocab, cfg.seed)
                )
            log.info("explained layer %d (%d of %d)", layer, n, len(todo))
            _pause(n)
        timings["explain_score_s"] = round(time.perf_counter() - t, 3)
    if expl is not None:
        timings["llm"] = {
            **expl.client.stats.as_dict(),
            "concurrency": expl.s.concurrency,
            "failed_neurons": sum(llm_run.failed(out, layer) for layer in layers),
        }
        if timings["llm"]["failed_neurons"]:
            log.warning(llm_run.summary(out, layers))
    done: dict[str, Any] = {**manifest, "complete": True}
    if expl is None:
        done["chosen"] = {str(layer): output.read_chosen(out, layer) for layer in layers}
    output.write_json(out / output.MANIFEST, done)
    output.write_json(out / output.RUN_LOG, timings)
    return out


def _load_model(device: str | None) -> Callable[[Atlas], Any]:
    def load(atlas: Atlas) -> Any:
        from ..atlas import load_atlas_model

        return load_atlas_model(atlas, device=device)

    return load


def _pause(n_layers: int) -> None:
    """Test hook: with ``$NEURON_SIGNATURES_EXPLAIN_PAUSE_AFTER_LAYERS=N`` the run stops for
    good after writing its N-th layer file, so a test can ``kill -9`` it at a known point."""
    n = int(os.environ.get(PAUSE_ENV, "0") or 0)
    if 0 < n <= n_layers:
        log.warning("%s=%d: pausing (waiting to be killed)", PAUSE_ENV, n)
        while True:
            time.sleep(60)
