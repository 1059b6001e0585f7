"""Influence mode: score every neuron of a prompt by its effect on a target logit.

1. Open the run, resolve the prompt(s) (``all`` = every prompt, one model load), load the
   tokenizer and check that it reproduces the stored token ids (cut as the dump cut them with
   ``--truncate``; the stored ids are what is scored); resolve target flags.
2. Load the run's model (or ``--model_name``) in fp32 by default and check its shape matches.
3. Per prompt: one traced forward (plus one backward for ``act_grad``), the target and the
   model's prediction there (top-5 tokens, the target's probability and rank), the
   influence of every (layer, neuron) (:mod:`.dla` or :mod:`.actgrad`), the DLA closure, and
   optionally the causal check (:mod:`.causal`).
4. Write ``influence_<pid>_<metric>_<target_mode>_pos<P>_tok<T>[...].json`` (the selection),
   ``.csv`` / ``.parquet`` (every neuron) and ``_meta.json`` (see :mod:`.influence_report`).
"""

from __future__ import annotations

import logging
import time
from typing import Any

import numpy as np

from ..errors import BadArgumentError
from ..store import PromptRecord, Run, open_run
from .influence_config import InfluenceConfig, InfluenceResult
from .targets import (
    Target,
    check_tokenisation,
    parse_ctx,
    prediction,
    resolve_prompts,
    target_position,
    token_id_arg,
    token_string,
)

log = logging.getLogger(__name__)


def _check_config(cfg: InfluenceConfig) -> None:
    if cfg.metric not in ("dla", "act_grad"):
        raise BadArgumentError(f"--influence_metric {cfg.metric!r}: use dla or act_grad")
    if cfg.metric == "dla" and cfg.objective == "logprob":
        raise BadArgumentError(
            "DLA is linear in the logits and cannot attribute a log-probability: use "
            "--objective logit or logit_diff, or --influence_metric act_grad"
        )
    if cfg.target_mode != "next_token" and (cfg.target_token or cfg.target_token_id is not None):
        raise BadArgumentError("--target_token/_id only apply to --target_mode next_token")
    if cfg.verify_top < 0:
        raise BadArgumentError(f"--verify_top must be 0 or more, got {cfg.verify_top}")


def _check_model(lm: Any, run: Run) -> None:
    if lm.n_layers != run.n_layers or lm.d_mlp != run.d_mlp:
        raise BadArgumentError(
            f"model {lm.name} has {lm.n_layers} layers x {lm.d_mlp} neurons but the run was "
            f"made with {run.model_name} ({run.n_layers} x {run.d_mlp}): pass the run's model "
            "with --model_name"
        )


def run_influence(cfg: InfluenceConfig, lm: Any = None) -> list[InfluenceResult]:
    """Influence of every neuron for the asked prompt(s), with one model load.

    Args:
        cfg: the analysis arguments.
        lm: an already loaded :class:`~neuron_signatures.models.LoadedModel` (tests); by
            default the run's model (or ``cfg.model_name``) is loaded.
    """
    from ..models import load_model, load_tokenizer
    from .causal import neuron_means
    from .influence_report import write_influence
    from .trace import model_weights

    _check_config(cfg)
    run = open_run(cfg.run_dir)
    prompts = resolve_prompts(run, cfg.prompt_id)
    name = cfg.model_name or run.model_name
    tok = lm.tokenizer if lm is not None else load_tokenizer(name)
    truncated = {p.index: check_tokenisation(tok, run, p) for p in prompts}
    target_id = token_id_arg(tok, cfg.target_token, cfg.target_token_id, "--target_token")
    if cfg.target_mode == "next_token" and target_id is None:
        raise BadArgumentError("--target_mode next_token needs --target_token or --target_token_id")
    baseline = token_id_arg(tok, cfg.baseline_token, cfg.baseline_token_id, "--baseline_token")
    if cfg.objective == "logit_diff" and baseline is None:
        raise BadArgumentError("--objective logit_diff needs --baseline_token or its _id")
    if lm is None:
        lm = load_model(name, device=cfg.device or "cpu", dtype=cfg.model_dtype, tokenizer=tok)
    _check_model(lm, run)
    weights = model_weights(lm)
    means = (
        neuron_means(run, range(lm.n_layers)) if cfg.verify_top and cfg.ablation == "mean" else None
    )
    out = []
    for p in prompts:
        t0 = time.perf_counter()
        res = prompt_influence(lm, weights, run, p, cfg, target_id, baseline, means)
        res.meta["truncated_at_dump"] = truncated[p.index]
        res.meta["seconds"] = round(time.perf_counter() - t0, 4)
        res.files = write_influence(run, res, cfg)
        out.append(res)
    return out


def _resolve_target(cfg: InfluenceConfig, p: PromptRecord, given: int | None) -> Any:
    """The target id as a function of the logit row (only ``top1_logit`` reads the row)."""

    def pick(row: Any) -> int:
        if cfg.target_mode == "top1_logit":
            return int(row.argmax())
        if cfg.target_mode == "last_token":
            return int(p.token_ids[-1])
        return int(given)  # type: ignore[arg-type]

    return pick


def prompt_influence(
    lm: Any,
    weights: Any,
    run: Run,
    p: PromptRecord,
    cfg: InfluenceConfig,
    target_id: int | None,
    baseline: int | None,
    means: dict[int, np.ndarray] | None,
) -> InfluenceResult:
    """Influence of every neuron of one prompt (no files written)."""
    from .actgrad import act_grad, objective_fn
    from .dla import dla
    from .influence_report import build_table, verify
    from .trace import run_trace

    pos = target_position(cfg.target_mode, cfg.target_pos, p.seq_len)
    ctx = parse_ctx(cfg.ctx_idx, pos, p.seq_len)
    if cfg.metric == "dla" and ctx is not None and ctx != pos:
        raise BadArgumentError(
            f"DLA has a direct path only at the target position {pos}: drop --ctx_idx, or use "
            "--influence_metric act_grad for other positions"
        )
    if cfg.metric == "dla":
        ctx = pos  # the only position with a direct path to the target logit
    pick = _resolve_target(cfg, p, target_id)
    meta: dict[str, Any] = {
        "prompt_index": p.index,
        "text": p.text,
        "seq_len": p.seq_len,
        "ctx_idx": "all" if ctx is None else ctx,
        "baseline_token_id": baseline,
        "model_name": lm.name,
        "model_dtype": lm.dtype,
        "device": str(lm.device),
        "logit_softcap": weights.softcap,
        "run_dir": str(run.run_dir),
    }
    if cfg.metric == "act_grad":
        tr = run_trace(lm, p.token_ids, pos, objective_fn(cfg.objective, pick, baseline))
        tid = pick(tr.logits)
        infl, coef, ctx_pos = act_grad(tr, ctx)
        meta["objective_value"] = tr.objective
        meta["logits"] = "model output (after the final softcap, if any)"
    else:
        tr = run_trace(lm, p.token_ids, pos)
        tid = pick(tr.logits)
        infl, coef = dla(tr, weights, tid, baseline, exact=cfg.dla_mode == "exact")
        ctx_pos = infl.new_full(infl.shape, pos).long()
        meta.update(_closure(tr, weights, tid, baseline))
    target = Target(cfg.target_mode, pos, tid, token_string(lm.tokenizer, tid))
    meta.update(prediction(lm.tokenizer, tr.logits, tid))
    meta["activation_check"] = _activation_check(run, p, tr.acts, pos if ctx is None else ctx)
    arrays = [t.detach().cpu().numpy() for t in (infl, coef, ctx_pos, tr.acts)]
    table = build_table(p, *arrays)
    res = InfluenceResult(p.probe_id, target, table, meta)
    if cfg.verify_top:
        res.verify = verify(lm, p, res, cfg, ctx, baseline, means)
    return res


def _closure(tr: Any, weights: Any, tid: int, baseline: int | None) -> dict[str, Any]:
    """DLA meta: the frozen norm scales and the closure of all components' direct effects."""
    from .dla import component_effects, norm_scales

    comp = component_effects(tr, weights, tid, baseline)
    total = float(comp["embed"] + comp["attn"].sum() + comp["mlp"].sum())
    pre = float(tr.pre_logits[tid] - (tr.pre_logits[baseline] if baseline is not None else 0))
    closure = {
        "pre_softcap_objective": pre,
        "sum_of_components": total,
        "abs_error": abs(total - pre),
        "embed": float(comp["embed"]),
        "attn": comp["attn"].tolist(),
        "mlp": comp["mlp"].tolist(),
    }
    return {
        "logits": "pre-softcap (the unembedding's output)",
        "objective_value": pre,
        "norm_scales": norm_scales(tr, weights),
        "closure": closure,
    }


def _activation_check(run: Run, p: PromptRecord, acts: Any, c: int) -> dict[str, Any]:
    """How far the recomputed activations at position ``c`` are from the stored ones."""
    stored = run.prompt_acts(p.index)[:, c]  # [n_captured, d_mlp]
    mine = acts[run.layers, c].cpu().numpy()
    diff = float(np.abs(stored - mine).max(initial=0.0))
    scale = float(np.abs(stored).max(initial=0.0))
    if diff > 0.05 * max(scale, 1e-6):
        log.warning(
            "prompt %s: recomputed activations differ from the run by %.3g (max |a| "
            "%.3g): the model or dtype may differ from the dump's",
            p.probe_id,
            diff,
            scale,
        )
    return {
        "position": c,
        "max_abs_diff": diff,
        "max_abs_stored": scale,
        "save_dtype": run.save_dtype,
    }
