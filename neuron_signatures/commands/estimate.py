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
    a = p.add_argument_group("atlas (--atlas)")
    a.add_argument("--atlas", action="store_true", help="estimate an atlas build instead")
    a.add_argument("--tokens", default="1e6", help="corpus tokens of the atlas (1e8 accepted)")
    a.add_argument("--ctx_len", type=int, default=64, help="window length, BOS included")
    a.add_argument("--top_k", type=int, default=20, help="top-k and bottom-k examples")
    a.add_argument("--interval_samples", type=int, default=5, help="samples per (neuron, bin)")
    a.add_argument("--example_dtype", default="fp16", help="fp16 or fp32 example windows")
    a.add_argument("--write_scores_k", type=int, default=10, help="write-score logits kept")


def run(args: argparse.Namespace) -> int:
    from ..estimate import estimate_table, human_bytes

    if args.atlas:
        return _run_atlas(args)
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


def _parse_tokens(text: str) -> int:
    try:
        value = float(text)
    except ValueError:
        raise BadArgumentError(f"--tokens must be a number such as 1e8, got {text!r}") from None
    if not value >= 1 or value != int(value) or value > 1e15:
        raise BadArgumentError(f"--tokens must be a positive whole number, got {text!r}")
    return int(value)


def _run_atlas(args: argparse.Namespace) -> int:
    from ..estimate import ASSUMED_MFU, atlas_estimate, human_bytes

    n_tokens = _parse_tokens(str(args.tokens))
    if args.ctx_len < 2 or args.top_k < 1 or args.interval_samples < 1:
        raise BadArgumentError("--ctx_len must be >= 2, --top_k and --interval_samples >= 1")
    if args.write_scores_k < 0:
        raise BadArgumentError("--write_scores_k must be 0 (skip) or positive")
    if args.example_dtype not in ("fp16", "fp32"):
        raise BadArgumentError("--example_dtype must be fp16 or fp32")
    e = atlas_estimate(
        args.model_name,
        n_tokens,
        ctx_len=args.ctx_len,
        top_k=args.top_k,
        samples=args.interval_samples,
        example_dtype=args.example_dtype,
        write_scores_k=args.write_scores_k,
    )
    print(
        f"atlas of {e.model_name}: {e.n_layers} layers x {e.d_mlp} neurons = {e.n_neurons:,}, "
        f"{e.n_tokens:,} tokens in {e.n_windows:,} windows of {e.ctx_len}"
    )
    print(
        f"device memory (reduction state): {human_bytes(e.device_bytes)} "
        f"({e.state_bytes_per_neuron:,} B per neuron), plus one batch of activations"
    )
    print(
        f"disk: {human_bytes(e.disk_bytes)} = layers {human_bytes(e.layer_files_bytes)} "
        f"({e.disk_bytes_per_neuron:,} B per neuron) + windows {human_bytes(e.windows_bytes)} "
        f"+ write scores {human_bytes(e.write_scores_bytes)}"
    )
    hours = e.gpu_hours()
    if not hours:
        print("time: unknown (d_model not in the known-model table)")
        return 0
    assert e.body_params is not None
    print(
        f"time (ASSUMED, forward only, {e.forward_tokens:,} tokens with BOS): "
        f"2 x {e.body_params / 1e9:.2f}B body params FLOPs/token at "
        f"{ASSUMED_MFU:.0%} of dense bf16 peak"
    )
    print(f"{'gpu':<18} {'peak TFLOPS':>11} {'tokens/s':>10} {'hours':>8}")
    from ..estimate import GPU_BF16_TFLOPS

    for gpu, (tok_s, h) in hours.items():
        print(f"{gpu:<18} {GPU_BF16_TFLOPS[gpu]:>11.0f} {tok_s:>10,.0f} {h:>8.2f}")
    return 0
