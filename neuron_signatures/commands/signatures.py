"""``signatures``: per-probe metrics, role classes and names of selected neurons across probes."""

from __future__ import annotations

import argparse
from collections import Counter
from typing import TYPE_CHECKING

from ..errors import BadArgumentError

if TYPE_CHECKING:
    from ..signatures.config import NeuronSelection
    from ..signatures.corpus_check import NameCheck
    from ..signatures.result import SignatureResult

NAME = "signatures"
HELP = "cross-prompt signatures of selected neurons: per-probe metrics, role classes, names"
ORDER = 30


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--run_dir", required=True, help="run folder holding the seed and probes")
    p.add_argument(
        "--seed_prompt_id",
        default="seed_prompt",
        help="id (or index) of the seed prompt (default seed_prompt)",
    )
    sel = p.add_argument_group("neurons (one of)")
    sel.add_argument(
        "--neurons", default=None, help="top_neurons*.json, influence_*.json or influence_*.csv"
    )
    sel.add_argument(
        "--neuron_ids", default=None, help="explicit neurons, e.g. 3:12,5:40 or L3/N12,L5/N40"
    )
    sel.add_argument(
        "--layer_list",
        default=None,
        help="explicit layers, paired with --neuron_list (one layer: all)",
    )
    sel.add_argument("--neuron_list", default=None, help="explicit neurons, e.g. 12,40")
    p.add_argument(
        "--top_n",
        type=int,
        default=200,
        help="keep the first N neurons of --neurons (default 200; 0: all)",
    )
    p.add_argument(
        "--probes",
        default=None,
        help="comma-separated probe ids (default: every prompt but the seed)",
    )
    p.add_argument(
        "--config", default=None, help="TOML file of thresholds (see docs/signatures.example.toml)"
    )
    p.add_argument("--out_dir", default=None, help="output folder (default <run_dir>/analysis)")
    p.add_argument(
        "--name", default=None, help="file stem after signatures_ (default <seed>_<selection>)"
    )
    p.add_argument("--no_parquet", action="store_true", help="write the table as CSV only")
    p.add_argument(
        "--atlas",
        default=None,
        help="an atlas of the run's model (neuron-signatures atlas): check every name against "
        "its corpus (the named token's share of the top examples, the neuron's density, the "
        "write rank) and mark the names it does not support",
    )
    p.add_argument(
        "--no_write_check",
        action="store_true",
        help="skip the Say X write check (ranking each Say X name among the tokens the "
        "neuron's weights promote; loads the run's model when there is a Say X neuron)",
    )


def _selection(args: argparse.Namespace) -> NeuronSelection:
    from ..signatures.config import explicit_selection, parse_neuron_ids, read_selection

    given = [args.neurons is not None, args.neuron_ids is not None,
             args.layer_list is not None or args.neuron_list is not None]  # fmt: skip
    if sum(given) != 1:
        raise BadArgumentError(
            "give the neurons one way: --neurons FILE, --neuron_ids 3:12,5:40, or "
            "--layer_list 3,5 --neuron_list 12,40"
        )
    if args.top_n < 0:
        raise BadArgumentError(f"--top_n must be >= 0 (0 keeps all), got {args.top_n}")
    if args.neurons is not None:
        return read_selection(args.neurons, args.top_n or None)
    if args.neuron_ids is not None:
        return parse_neuron_ids(args.neuron_ids)
    if args.layer_list is None or args.neuron_list is None:
        raise BadArgumentError("--layer_list and --neuron_list go together: give both")
    return explicit_selection(args.layer_list, args.neuron_list)


def _write_check_line(res: SignatureResult) -> str:
    wc = res.write_check
    if wc is None:
        return "Say X write check: skipped (--no_write_check)"
    ranks = [r for r in wc.rank if r is not None]
    if not ranks:
        return "Say X write check: no Say X neuron"
    n_ok = sum(bool(a) for a in wc.agrees)
    return (
        f"Say X write check ({wc.model_name}): {n_ok} of {len(ranks)} names among their "
        f"neuron's top {wc.top_n} promoted tokens (of {wc.vocab_size})"
    )


def _corpus_line(check: NameCheck | None) -> str:
    if check is None:
        return ""
    return f"  [corpus {check.mark} {check.verdict}: {check.reason}]"


def run(args: argparse.Namespace) -> int:
    from ..signatures.compute import (
        compute_signatures,
        with_corpus_check,
        with_write_check,
        write_signatures,
    )
    from ..signatures.config import load_config
    from ..store import open_run

    selection = _selection(args)
    cfg = load_config(args.config)
    run_ = open_run(args.run_dir)
    atlas = None
    if args.atlas is not None:  # checked before anything is computed or loaded
        from ..atlas import open_atlas
        from ..signatures.corpus_check import check_same_model

        atlas = open_atlas(args.atlas)
        check_same_model(run_, atlas)
    probes = [x.strip() for x in args.probes.split(",") if x.strip()] if args.probes else None
    res = compute_signatures(run_, args.seed_prompt_id, selection, cfg, probes)
    if not args.no_write_check:
        res = with_write_check(run_, res)
    if atlas is not None:
        res = with_corpus_check(run_, res, atlas)
    inputs = {k: v for k, v in vars(args).items() if not k.startswith("_")}
    files = write_signatures(run_, res, args.out_dir, args.name, inputs, not args.no_parquet)
    cls = res.classification
    counts = Counter(cls.classes)
    print(f"{len(selection)} neurons x {len(res.metrics.probes)} probes: "
          + ", ".join(f"{c} {n}" for c, n in sorted(counts.items())))  # fmt: skip
    wc = res.write_check
    checks = res.corpus_check.checks if res.corpus_check else [None] * len(selection)
    for k in range(len(selection)):
        if cls.names[k] is not None:
            neuron = f"L{selection.layers[k]}/N{selection.neurons[k]}"
            line = f"  {neuron:<11} {cls.classes[k]:<13} {cls.names[k]}"
            if wc is not None and wc.rank[k] is not None:
                verdict = "agrees" if wc.agrees[k] else f"top promoted {wc.top_token[k]!r}"
                line += f"  (write rank {wc.rank[k]}: {verdict})"
            print(line + _corpus_line(checks[k]))
    print(_write_check_line(res))
    if res.corpus_check is not None:
        from ..signatures.corpus_check import summary_line

        print(summary_line(checks, f"atlas {res.corpus_check.atlas}"))
    for f in files:
        print(f"wrote {f}")
    return 0
