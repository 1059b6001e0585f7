"""``estimate``: storage per token, prompt and run for a model (the prototype's memory table)."""

from __future__ import annotations

import argparse

from ..errors import BadArgumentError
from ..models import EMBEDDED_NAME

NAME = "estimate"
HELP = "print the bytes a dump takes per token, per prompt and per run"
ORDER = 40


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model_name", default=EMBEDDED_NAME, help="model spec or known model name")
    p.add_argument("--seq_len", type=int, default=128, help="tokens per prompt (BOS included)")
    p.add_argument("--n_prompts", type=int, default=1000, help="number of prompts")


def run(args: argparse.Namespace) -> int:
    from ..estimate import estimate_table, human_bytes

    if args.seq_len < 1 or args.n_prompts < 1:
        raise BadArgumentError("--seq_len and --n_prompts must be positive")
    rows = estimate_table(args.model_name, args.seq_len, args.n_prompts)
    e0 = rows[0]
    print(
        f"{e0.model_name}: {e0.n_layers} layers x {e0.d_mlp} neurons, "
        f"{args.n_prompts} prompts x {args.seq_len} tokens"
    )
    print(f"{'save_dtype':<10} {'per token':>12} {'per prompt':>12} {'per run':>12}")
    for e in rows:
        print(
            f"{e.save_dtype:<10} {human_bytes(e.bytes_per_token):>12} "
            f"{human_bytes(e.bytes_per_prompt):>12} {human_bytes(e.bytes_per_run):>12}"
        )
    return 0
