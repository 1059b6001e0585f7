"""``explain``: explain and score every neuron of an atlas offline (token lookup, correlation
scores with floors), into ``<atlas>/explanations/``."""

from __future__ import annotations

import argparse
from pathlib import Path

NAME = "explain"
HELP = (
    "explain and score every neuron of an atlas offline: a token-lookup explanation per sign, "
    "correlation scores on held-out windows (top-and-random, random-only) with floors"
)
ORDER = 17


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--atlas", required=True, help="atlas folder (made by `neuron-signatures atlas`)"
    )
    p.add_argument("--layers", default=None, help="explain only these layers, e.g. 5,10-17")
    p.add_argument("--resume", action="store_true", help="finish an interrupted run")
    p.add_argument("--overwrite", action="store_true", help="replace existing explanations")
    p.add_argument(
        "--n_random_tokens",
        type=int,
        default=4096,
        help="tokens of the random held-out windows run through the model (default 4096)",
    )
    p.add_argument(
        "--top_tokens", type=int, default=32, help="tokens per explanation table (default 32)"
    )
    p.add_argument(
        "--prior",
        type=float,
        default=3.0,
        help="rank tokens by sum / (count + prior): rare tokens rank lower (default 3)",
    )
    p.add_argument("--seed", type=int, default=0, help="seeds the random windows and the floors")
    p.add_argument("--batch_size", type=int, default=16, help="windows per forward batch")
    p.add_argument("--device", default=None, help="device of the score-time forward (default auto)")


def run(args: argparse.Namespace) -> int:
    from ..explain import ExplainConfig, explain_atlas
    from ..neurons import parse_layers

    out = explain_atlas(
        ExplainConfig(
            atlas=Path(args.atlas),
            layers=parse_layers(args.layers),
            resume=args.resume,
            overwrite=args.overwrite,
            n_random_tokens=args.n_random_tokens,
            top_tokens=args.top_tokens,
            prior=args.prior,
            seed=args.seed,
            batch_size=args.batch_size,
            device=args.device,
        )
    )
    print(f"explanations written to {out}")
    return 0
