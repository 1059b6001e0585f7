"""Influence tables, the causal check on them, and their files.

``influence_<pid>_<metric>_<target_mode>_pos<P>_tok<T>[_ctx<C>|_ctxall][_<objective>][_approx]``,
``<pid>`` being the prompt id when it is plain (``[A-Za-z0-9_.]``), else a slug and a hash of it
(:func:`~neuron_signatures.analysis.tables.prompt_file_ids`), so no two prompts share a file:

* ``.json``: ``kind: influence``, the target and the selected records (``rank, layer, neuron,
  ctx_idx, activation, influence, token_ascii, coef`` and, after ``--verify_top``,
  ``real_delta, predicted_delta``), sorted by ``|influence|``;
* ``.csv`` / ``.parquet``: every neuron, same columns;
* ``_meta.json``: every argument, the model, dtype, objective, the model's prediction at the
  target row (``target_prob``, ``target_rank``, ``top_tokens``), DLA mode, norm scales, closure,
  activation check, causal-check summary and timings.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ..analysis.results import analysis_dir, write_json
from ..analysis.selection import select
from ..analysis.tables import (
    FORMAT_VERSION,
    jsonable,
    prompt_file_id,
    prompt_file_ids,
    records,
    write_table,
)
from ..neurons import NeuronId
from ..store import PromptRecord, Run
from ..store.build import library_versions
from ..store.manifest import utc_now
from .influence_config import InfluenceConfig, InfluenceResult

COLUMNS = ("rank", "layer", "neuron", "ctx_idx", "activation", "influence", "token_ascii", "coef")


def build_table(
    p: PromptRecord, infl: np.ndarray, coef: np.ndarray, ctx_pos: np.ndarray, acts: np.ndarray
) -> Any:
    """Every neuron as a row (arrays ``[n_layers, d_mlp]``; ``acts [n_layers, seq, d_mlp]``),
    sorted by ``|influence|`` descending (ties: layer, then neuron)."""
    import pandas as pd

    n_l, d = infl.shape
    act = np.take_along_axis(acts, ctx_pos[:, None, :], axis=1)[:, 0]
    table = pd.DataFrame(
        {
            "layer": np.repeat(np.arange(n_l), d),
            "neuron": np.tile(np.arange(d), n_l),
            "ctx_idx": ctx_pos.reshape(-1),
            "activation": act.reshape(-1),
            "influence": infl.reshape(-1),
            "token_ascii": np.asarray(p.tokens_ascii, dtype=object)[ctx_pos.reshape(-1)],
            "coef": coef.reshape(-1),
        }
    )
    order = np.argsort(-np.abs(table["influence"].to_numpy()), kind="stable")
    table = table.iloc[order].reset_index(drop=True)
    table.insert(0, "rank", np.arange(1, len(table) + 1))
    return table


def verify(
    lm: Any,
    p: PromptRecord,
    res: InfluenceResult,
    cfg: InfluenceConfig,
    ctx: int | None,
    baseline: int | None,
    means: dict[int, np.ndarray] | None,
) -> dict[str, Any]:
    """Ablate each of the top ``cfg.verify_top`` neurons; add ``real_delta``/``predicted_delta``."""
    import torch

    from .actgrad import objective_of_rows
    from .causal import causal_check
    from .trace import ablated_rows

    top = res.table.head(cfg.verify_top)
    layers, neurons = top["layer"].to_numpy(), top["neuron"].to_numpy()
    values = np.zeros(len(top), np.float32)
    if means is not None:
        values = np.stack([means[i] for i in range(lm.n_layers)])[layers, neurons]
    lay = torch.from_numpy(np.concatenate([[-1], layers])).long()
    neu = torch.from_numpy(np.concatenate([[0], neurons])).long()
    val = torch.from_numpy(np.concatenate([[0.0], values]).astype(np.float32))
    post, pre = ablated_rows(lm, p.token_ids, res.target.pos, ctx, lay, neu, val)
    rows = pre if cfg.metric == "dla" else post
    obj = objective_of_rows(rows, cfg.objective, res.target.token_id, baseline).cpu().numpy()
    check = causal_check(
        obj[1:] - obj[0], top["influence"].to_numpy(), top["coef"].to_numpy(), values, cfg.ablation
    )
    n = len(top)
    res.table["real_delta"] = np.nan
    res.table["predicted_delta"] = np.nan
    res.table.loc[: n - 1, "real_delta"] = check.real_delta
    res.table.loc[: n - 1, "predicted_delta"] = check.predicted_delta
    summary = check.summary()
    summary["clean_objective"] = float(obj[0])
    summary["objective_on"] = "pre-softcap logits" if cfg.metric == "dla" else "model output"
    return summary


def file_stem(res: InfluenceResult, cfg: InfluenceConfig, pid_name: str | None = None) -> str:
    """The prototype's name plus a suffix for every non-default choice.

    ``pid_name`` is the prompt id's file-name form within its run (:func:`prompt_file_ids`);
    by default the id's own form (:func:`prompt_file_id`).
    """
    t = res.target
    pid = pid_name or prompt_file_id(res.prompt_id)
    stem = f"influence_{pid}_{cfg.metric}_{t.mode}_pos{t.pos}_tok{t.token_id}"
    if cfg.ctx_idx is not None and str(cfg.ctx_idx).lower() == "all":
        stem += "_ctxall"
    elif cfg.ctx_idx is not None and res.meta.get("ctx_idx") != t.pos:
        stem += f"_ctx{res.meta.get('ctx_idx')}"
    if cfg.objective != "logit":
        stem += f"_{cfg.objective}"
    if cfg.metric == "dla" and cfg.dla_mode == "approx":
        stem += "_approx"
    return stem


def write_influence(run: Run, res: InfluenceResult, cfg: InfluenceConfig) -> list[Path]:
    """Write the JSON (selection), CSV/Parquet (all neurons) and meta of one prompt."""
    folder = analysis_dir(run.run_dir, cfg.out_dir)
    folder.mkdir(parents=True, exist_ok=True)
    stem = file_stem(res, cfg, prompt_file_ids(p.probe_id for p in run.prompts)[res.prompt_id])
    chosen = select(res.table["influence"].abs().to_numpy(), cfg.selection)
    t = res.target
    head = {
        "format_version": FORMAT_VERSION,
        "kind": "influence",
        "prompt_id": res.prompt_id,
        "metric": cfg.metric,
        "target_mode": t.mode,
        "target_pos": t.pos,
        "target_token_id": t.token_id,
        "target_token": t.token,
        "target_prob": res.meta.get("target_prob"),
        "target_rank": res.meta.get("target_rank"),
        "ctx_idx": res.meta["ctx_idx"],
        "objective": cfg.objective,
        "baseline_token_id": res.meta.get("baseline_token_id"),
        "dla_mode": cfg.dla_mode if cfg.metric == "dla" else None,
        "model_dtype": res.meta.get("model_dtype"),
        "source": f"{stem}.csv",
        "selection": {
            **cfg.selection.to_dict(),
            "ranked_by": "|influence|",
            "n_selected": len(chosen),
            "n_total": len(res.table),
        },
    }
    doc = {**head, "records": records(res.table.iloc[chosen])}
    meta = {
        **head,
        "kind": "influence_meta",
        "created_at_utc": utc_now(),
        **res.meta,
        "verify": res.verify,
        "args": cfg.args,
        "versions": library_versions(),
    }
    json_path, meta_path = folder / f"{stem}.json", folder / f"{stem}_meta.json"
    write_json(json_path, jsonable(doc))
    files = [json_path, *write_table(res.table, folder / f"{stem}.csv")]
    write_json(meta_path, jsonable(meta))
    return [*files, meta_path]


def fmt_prob(p: float | None) -> str:
    """A probability for people: 3 decimals, or 2 significant digits below 0.001."""
    if p is None:
        return "?"
    return f"{p:.3f}" if p >= 1e-3 or p == 0 else f"{p:.1e}"


def summary_lines(res: InfluenceResult, n: int = 10) -> list[str]:
    """What ``analyze --mode influence`` prints for one prompt: the model's prediction at the
    target row, the top ``n`` neurons and the causal check."""
    t, m = res.target, res.meta
    tops = " | ".join(f"{x['token']!r} {fmt_prob(x['prob'])}" for x in m.get("top_tokens", []))
    lines = [
        f"{res.prompt_id}: target {t.token!r} (id {t.token_id}) at position {t.pos}: "
        f"p={fmt_prob(m.get('target_prob'))}, rank {m.get('target_rank')}",
        f"  model's top {len(m.get('top_tokens', []))} there: {tops}",
    ]
    for _, r in res.table.head(n).iterrows():
        lines.append(
            f"  #{r['rank']:<4} {NeuronId(r['layer'], r['neuron'])!s:<12} "
            f"influence={r['influence']:+.4g}  "
            f"activation={r['activation']:.4g}  at {r['ctx_idx']} {r['token_ascii']!r}"
        )
    if res.verify:
        v = res.verify
        rho = "n/a" if v["spearman"] is None else f"{v['spearman']:.3f}"
        sign = "n/a" if v["sign_agreement"] is None else f"{v['sign_agreement']:.3f}"
        lines.append(f"  verify_top {v['n']}: spearman={rho} sign_agreement={sign}")
    if res.files:
        lines.append(f"  -> {res.files[0]} (+ .csv, .parquet, _meta.json)")
    return lines
