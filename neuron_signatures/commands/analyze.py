"""``analyze``: rank neurons by their peaks, their influence on a target logit, or write scores."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from ..errors import BadArgumentError
from ..neurons import NeuronId

NAME = "analyze"
HELP = "rank neurons across prompts (peaks), by influence on a target logit, or write scores"
ORDER = 20


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--mode",
        choices=["peaks", "influence", "write_scores"],
        default="peaks",
        help="peaks (default, no model), influence, or write_scores",
    )
    p.add_argument("--run_dir", help="run folder (write_scores: default from --from)")
    p.add_argument("--out_dir", default=None, help="output folder (default <run_dir>/analysis)")
    sel = p.add_argument_group("selection")
    sel.add_argument("--top_k", type=int, default=None, help="keep the K best (default 200)")
    sel.add_argument(
        "--cumulative_threshold",
        type=float,
        default=None,
        help="keep the smallest prefix reaching this share of the total score",
    )
    pk = p.add_argument_group("peaks")
    pk.add_argument(
        "--include_bos",
        action="store_true",
        help="search peaks on the BOS position too (the prototype's numbers)",
    )
    pk.add_argument(
        "--functional_tokens_json",
        default=None,
        help="JSON list of functional tokens replacing the default set",
    )
    inf = p.add_argument_group("influence")
    inf.add_argument(
        "--prompt_id", default="0", help="prompt id, or index (negative ok), or 'all' (default 0)"
    )
    inf.add_argument(
        "--influence_metric",
        choices=["dla", "act_grad"],
        default="act_grad",
        help="act_grad: activation x gradient (default); dla: direct logit attribution",
    )
    inf.add_argument(
        "--target_mode",
        choices=["top1_logit", "last_token", "next_token"],
        default="top1_logit",
        help="top1_logit: argmax at --target_pos; last_token: teacher-forced last token; "
        "next_token: --target_token(_id)",
    )
    inf.add_argument("--target_pos", type=int, default=-1, help="logit row (default -1)")
    inf.add_argument(
        "--target_token",
        default=None,
        help="next_token: a string that is exactly one token (leading space kept)",
    )
    inf.add_argument("--target_token_id", type=int, default=None, help="next_token: a token id")
    inf.add_argument(
        "--ctx_idx",
        default=None,
        help="position whose neurons are scored (default the target position) or all",
    )
    inf.add_argument(
        "--objective",
        choices=["logit", "logprob", "logit_diff"],
        default="logit",
        help="what act_grad differentiates / DLA decomposes (logit_diff: minus --baseline_token)",
    )
    inf.add_argument("--baseline_token", default=None, help="logit_diff: the one-token baseline")
    inf.add_argument("--baseline_token_id", type=int, default=None, help="logit_diff: its id")
    inf.add_argument(
        "--dla_mode",
        choices=["exact", "approx"],
        default="exact",
        help="exact: real norms (frozen scales); approx: act x <W_out[n], W_U[:, t]>",
    )
    inf.add_argument(
        "--verify_top",
        type=int,
        default=0,
        help="ablate each of the top N neurons and record the real objective change",
    )
    inf.add_argument(
        "--ablation",
        choices=["zero", "mean"],
        default="zero",
        help="verify_top ablation value: zero, or the neuron's mean over the run",
    )
    inf.add_argument("--model_name", default=None, help="model spec (default: the run's model)")
    inf.add_argument("--device", default=None, help="cpu, cuda, cuda:N (default: cpu)")
    inf.add_argument(
        "--model_dtype",
        choices=["bf16", "fp16", "fp32"],
        default="fp32",
        help="compute dtype for influence / write scores (default fp32)",
    )
    ws = p.add_argument_group("write_scores")
    ws.add_argument(
        "--from",
        dest="from_file",
        default=None,
        help="influence .csv/.json or top_neurons*.json to take neurons from",
    )
    ws.add_argument("--top_n", type=int, default=50, help="neurons to score (default 50)")
    ws.add_argument("--topk_write", type=int, default=15, help="tokens per side (default 15)")
    ws.add_argument(
        "--explicit_tokens",
        default=None,
        help='"|"-separated strings to score, e.g. " Austin| Texas"',
    )


def run(args: argparse.Namespace) -> int:
    if args.mode == "peaks":
        return _peaks(args)
    if args.mode == "influence":
        return _influence(args)
    return _write_scores(args)


def _need_run_dir(args: argparse.Namespace) -> str:
    if not args.run_dir:
        raise BadArgumentError(f"--mode {args.mode} needs --run_dir RUN_FOLDER")
    return _run_folder(args.run_dir)


def _run_folder(run_dir: str) -> str:
    """``run_dir``, refused with a fix when it names a file instead of a run folder."""
    path = Path(run_dir)
    if path.is_file():
        raise BadArgumentError(
            f"--run_dir {run_dir} is a file, not a run folder: pass the folder that holds "
            f"manifest.json and activations/ (e.g. --run_dir {_folder_hint(path)})"
        )
    return str(run_dir)


def _folder_hint(path: Path) -> Path:
    """The run folder a file probably belongs to (its folder, or the one above analysis/)."""
    parent = path.parent
    if parent.name in ("analysis", "activations"):
        return parent.parent
    return parent


def _flags(args: argparse.Namespace) -> dict[str, Any]:
    return {k: v for k, v in vars(args).items() if not k.startswith("_")}


def _peaks(args: argparse.Namespace) -> int:
    from ..analysis.peaks_report import run_peaks
    from ..analysis.selection import make_selection

    res = run_peaks(
        _need_run_dir(args),
        make_selection(args.top_k, args.cumulative_threshold),
        out_dir=args.out_dir,
        include_bos=args.include_bos,
        functional_tokens_json=args.functional_tokens_json,
        args=_flags(args),
    )
    print(
        f"ranked {len(res.table)} neurons, selected {len(res.selected)} "
        f"({res.meta['selection']['tag']}) -> {res.files[0].parent}"
    )
    for _, r in res.selected.head(10).iterrows():
        print(
            f"  #{r['rank']:<4} {NeuronId(r['layer'], r['neuron'])!s:<12} mean_peak_abs="
            f"{r['mean_peak_abs']:.4g}  mode token {r['mode_peak_token_ascii']!r}"
        )
    return 0


def _influence(args: argparse.Namespace) -> int:
    from ..analysis.selection import make_selection
    from ..attribution.influence import InfluenceConfig, run_influence
    from ..attribution.influence_report import summary_lines

    cfg = InfluenceConfig(
        run_dir=Path(_need_run_dir(args)),
        prompt_id=args.prompt_id,
        metric=args.influence_metric,
        target_mode=args.target_mode,
        target_pos=args.target_pos,
        target_token=args.target_token,
        target_token_id=args.target_token_id,
        ctx_idx=args.ctx_idx,
        objective=args.objective,
        baseline_token=args.baseline_token,
        baseline_token_id=args.baseline_token_id,
        dla_mode=args.dla_mode,
        verify_top=args.verify_top,
        ablation=args.ablation,
        model_name=args.model_name,
        device=args.device,
        model_dtype=args.model_dtype,
        selection=make_selection(args.top_k, args.cumulative_threshold),
        out_dir=Path(args.out_dir) if args.out_dir else None,
        args=_flags(args),
    )
    for res in run_influence(cfg):
        print("\n".join(summary_lines(res)))
    return 0


def _write_scores(args: argparse.Namespace) -> int:
    from ..attribution.write_scores import WriteScoresConfig, run_write_scores, summary_lines

    if not args.from_file:
        raise BadArgumentError("--mode write_scores needs --from INFLUENCE_CSV_OR_TOP_NEURONS_JSON")
    cfg = WriteScoresConfig(
        source=Path(args.from_file),
        run_dir=Path(_run_folder(args.run_dir)) if args.run_dir else None,
        top_n=args.top_n,
        topk_write=args.topk_write,
        explicit_tokens=args.explicit_tokens,
        model_name=args.model_name,
        device=args.device,
        model_dtype=args.model_dtype,
        out_dir=Path(args.out_dir) if args.out_dir else None,
        args=_flags(args),
    )
    print("\n".join(summary_lines(run_write_scores(cfg))))
    return 0
