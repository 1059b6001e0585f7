"""Write scores: the tokens each neuron's output direction promotes and suppresses (logit lens).

1. Read the neurons to score from an influence table (``.csv`` / ``.json``) or a
   ``top_neurons*.json`` (their first ``top_n`` rows, in rank order).
2. Per neuron, its write direction ``W_out[l][:, n] ⊙ (1 + g_post_mlp[l]) ⊙ (1 + g_final)``: the
   down-projection column with the post-MLP and final norm gains applied, so a score times
   ``activation / (rms_post · rms_final)`` is the neuron's exact DLA on that token.
3. Multiply by the unembedding in vocabulary chunks (never a full fp32 copy of ``W_U``) and keep
   the running top / bottom ``topk_write``; score explicit strings (a string that is several
   tokens is reported with ``n_tokens`` and no score, never silently dropped).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..analysis.results import analysis_dir, load_ranking, write_json
from ..analysis.tables import FORMAT_VERSION, jsonable, safe_name
from ..errors import BadArgumentError
from ..neurons import NeuronId
from ..store import open_run
from ..store.build import library_versions

log = logging.getLogger(__name__)
VOCAB_CHUNK = 16384


@dataclass
class WriteScoresConfig:
    """Arguments of a write-scores analysis (the CLI flags of the same names)."""

    source: Path
    run_dir: Path | None = None
    top_n: int = 50
    topk_write: int = 15
    explicit_tokens: str | None = None  # "|"-separated strings, leading spaces kept
    model_name: str | None = None
    device: str | None = None
    model_dtype: str = "fp32"
    out_dir: Path | None = None
    args: dict[str, Any] = field(default_factory=dict)


def read_neurons(source: Path, top_n: int) -> list[tuple[int, int]]:
    """The first ``top_n`` (layer, neuron) of a ranking file, best first."""
    if not source.is_file():
        raise BadArgumentError(
            f"--from {source} does not exist: give an influence .csv/.json "
            "or a top_neurons*.json of a run's analysis folder"
        )
    if source.suffix in (".csv", ".parquet"):
        import pandas as pd

        df = pd.read_csv(source) if source.suffix == ".csv" else pd.read_parquet(source)
        if not {"layer", "neuron"} <= set(df.columns):
            raise BadArgumentError(f"--from {source} has no layer/neuron columns")
        if "rank" in df.columns:
            df = df.sort_values("rank", kind="stable")
        elif "mean_peak_abs" in df.columns:
            df = df.sort_values("mean_peak_abs", ascending=False, kind="stable")
        head = df.head(top_n)
        return list(zip(head["layer"].astype(int), head["neuron"].astype(int), strict=True))
    ranking = load_ranking(source)
    if ranking is None or not ranking.neurons:
        raise BadArgumentError(f"--from {source} is not a ranking with neurons")
    return [(r.layer, r.neuron) for r in sorted(ranking.neurons, key=lambda r: r.rank)][:top_n]


def write_directions(weights: Any, neurons: list[tuple[int, int]]) -> Any:
    """``[d_model, n]`` float32 write directions with the post-MLP and final gains applied."""
    import torch

    layers = torch.tensor([layer for layer, _ in neurons])
    index = torch.tensor([n for _, n in neurons])
    out = torch.empty(weights.g_final.shape[0], len(neurons))
    for layer in layers.unique().tolist():  # one gather per layer, only the needed columns
        sel = torch.nonzero(layers == layer).flatten()
        cols = weights.w_out[layer][:, index[sel]].float().cpu()
        out[:, sel] = cols * weights.g_post_mlp[layer].cpu()[:, None]
    return out * weights.g_final.cpu()[:, None]


def vocab_extremes(w_u: Any, dirs: Any, k: int, chunk: int = VOCAB_CHUNK) -> tuple[Any, ...]:
    """Top and bottom ``k`` scores (and token ids) of ``W_U @ dirs`` per column, chunked.

    Returns:
        ``(pos_val, pos_id, neg_val, neg_id)``, each ``[n, k]`` (``neg`` ascending).
    """
    import torch

    n = dirs.shape[1]
    k = min(k, w_u.shape[0])
    best_v = torch.full((n, 0), float("-inf"))
    best_i = torch.zeros((n, 0), dtype=torch.long)
    worst_v, worst_i = best_v.clone().neg(), best_i.clone()
    for lo in range(0, w_u.shape[0], chunk):
        s = (w_u[lo : lo + chunk].float() @ dirs).T.cpu()  # [n, chunk]
        ids = torch.arange(lo, lo + s.shape[1]).expand(n, -1)
        v, j = torch.cat([best_v, s], 1).topk(k, dim=1)
        best_v, best_i = v, torch.cat([best_i, ids], 1).gather(1, j)
        v, j = torch.cat([worst_v, s], 1).topk(k, dim=1, largest=False)
        worst_v, worst_i = v, torch.cat([worst_i, ids], 1).gather(1, j)
    return best_v, best_i, worst_v, worst_i


def explicit_scores(tokenizer: Any, w_u: Any, dirs: Any, text: str | None) -> list[list[dict]]:
    """Per neuron, the score of each ``|``-separated string (one token: scored; more: reported)."""
    strings = [s for s in (text or "").split("|") if s != ""]
    out: list[list[dict]] = [[] for _ in range(dirs.shape[1])]
    for s in strings:  # a handful of user strings
        ids = list(tokenizer(s, add_special_tokens=False).input_ids)
        scores = (w_u[ids[0]].float() @ dirs).tolist() if len(ids) == 1 else [None] * len(out)
        for i, sc in enumerate(scores):
            out[i].append({"token": s, "token_ids": ids, "n_tokens": len(ids), "score": sc})
    if any(len(tokenizer(s, add_special_tokens=False).input_ids) != 1 for s in strings):
        log.warning("some explicit strings are not one token: reported with score null")
    return out


def _side(tokenizer: Any, vals: Any, ids: Any) -> list[dict]:
    names = tokenizer.batch_decode([[int(i)] for i in ids.tolist()])
    return [
        {"token": t, "token_id": int(i), "score": float(v)}
        for t, i, v in zip(names, ids.tolist(), vals.tolist(), strict=True)
    ]


@dataclass
class WriteScoresResult:
    """The written file and its document (``neurons[{layer, neuron, write_scores}]``)."""

    path: Path
    doc: dict[str, Any]


def run_write_scores(cfg: WriteScoresConfig, lm: Any = None) -> WriteScoresResult:
    """Score the neurons of ``cfg.source`` and write ``write_scores_<source>_top<N>.json``."""
    from ..models import load_model
    from .trace import model_weights

    if cfg.top_n < 1 or cfg.topk_write < 1:
        raise BadArgumentError("--top_n and --topk_write must be positive")
    neurons = read_neurons(cfg.source, cfg.top_n)
    run_dir = cfg.run_dir or cfg.source.resolve().parent.parent
    run = open_run(run_dir)
    for layer, n in neurons:
        if not (0 <= layer < run.n_layers and 0 <= n < run.d_mlp):
            raise BadArgumentError(f"neuron L{layer}/N{n} of {cfg.source} is not in {run_dir}")
    if lm is None:
        lm = load_model(
            cfg.model_name or run.model_name, device=cfg.device or "cpu", dtype=cfg.model_dtype
        )
    w = model_weights(lm)
    dirs = write_directions(w, neurons).to(w.w_u.device)
    pv, pi, nv, ni = vocab_extremes(w.w_u, dirs, cfg.topk_write)
    explicit = explicit_scores(lm.tokenizer, w.w_u, dirs, cfg.explicit_tokens)
    rows = [
        {
            "layer": layer,
            "neuron": n,
            "write_scores": {
                "top_pos": _side(lm.tokenizer, pv[i], pi[i]),
                "top_neg": _side(lm.tokenizer, nv[i], ni[i]),
                "explicit": explicit[i],
            },
        }
        for i, (layer, n) in enumerate(neurons)
    ]
    doc = {
        "format_version": FORMAT_VERSION,
        "kind": "write_scores",
        "source": cfg.source.name,
        "model_name": lm.name,
        "model_dtype": lm.dtype,
        "top_n": cfg.top_n,
        "topk_write": cfg.topk_write,
        "explicit_tokens": cfg.explicit_tokens,
        "gains": "post-MLP and final norm gains (1 + weight) applied; no 1/rms",
        "args": cfg.args,
        "versions": library_versions(),
        "neurons": rows,
    }
    folder = analysis_dir(run.run_dir, cfg.out_dir)
    path = folder / f"write_scores_{safe_name(cfg.source.stem)}_top{cfg.top_n}.json"
    write_json(path, jsonable(doc))
    return WriteScoresResult(path, doc)


def _tokens(side: list[dict], k: int) -> str:
    return ", ".join(f"{x['token']!r} {x['score']:+.3g}" for x in side[:k])


def summary_lines(res: WriteScoresResult, n: int = 10, k: int = 3) -> list[str]:
    """What ``analyze --mode write_scores`` prints: per neuron of the first ``n``, the ``k``
    tokens it promotes most and suppresses most, and the explicit strings' scores."""
    doc = res.doc
    lines = [
        f"scored {len(doc['neurons'])} neurons of {doc['source']} ({doc['topk_write']} tokens "
        f"per side) -> {res.path}"
    ]
    for rank, r in enumerate(doc["neurons"][:n], 1):
        ws = r["write_scores"]
        line = (
            f"  #{rank:<4} {NeuronId(r['layer'], r['neuron'])!s:<12} "
            f"promotes {_tokens(ws['top_pos'], k)}"
            f"  suppresses {_tokens(ws['top_neg'], k)}"
        )
        if ws["explicit"]:
            line += "  explicit " + ", ".join(
                f"{x['token']!r} " + ("n/a" if x["score"] is None else f"{x['score']:+.3g}")
                for x in ws["explicit"]
            )
        lines.append(line)
    return lines
