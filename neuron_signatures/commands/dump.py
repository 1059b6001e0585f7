"""``dump``: run prompts through a model and store every MLP neuron's activation."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..errors import BadPromptsError
from ..neurons import parse_layers
from ._flags import add_model_arguments

NAME = "dump"
HELP = "dump blocks.{l}.mlp.hook_post activations of prompts into a run folder"
ORDER = 10


def add_arguments(p: argparse.ArgumentParser) -> None:
    src = p.add_argument_group("prompts (one of)")
    src.add_argument("--prompts_json", help='JSON list of {"id", "text"} (the prototype format)')
    src.add_argument("--prompts", help="a .json, .jsonl or plain-text file (one prompt per line)")
    src.add_argument("--single_prompt", help="one prompt text (id single_prompt)")
    p.add_argument("--out_dir", required=True, help="run folder to write")
    add_model_arguments(p)
    p.add_argument(
        "--save_dtype", choices=["bf16", "fp16", "fp32"], default="bf16", help="stored dtype"
    )
    p.add_argument("--layers", default=None, help="layers to capture, e.g. 0,5,10-17 (default all)")
    p.add_argument(
        "--batch_size",
        type=int,
        default=None,
        help="prompts per batch (default: automatic from a token budget)",
    )
    p.add_argument(
        "--max_batch_tokens",
        type=int,
        default=None,
        help="padded tokens per batch when --batch_size is automatic",
    )
    p.add_argument("--max_seq_len", type=int, default=2048, help="longest prompt in tokens")
    p.add_argument("--truncate", action="store_true", help="cut prompts longer than --max_seq_len")
    p.add_argument("--no_prepend_bos", action="store_true", help="do not add a BOS token")
    p.add_argument(
        "--check_finite",
        action="store_true",
        help="stop at the first NaN/Inf and report prompt, layer and position",
    )
    p.add_argument(
        "--save_format",
        choices=["safetensors", "pt"],
        default="safetensors",
        help="pt also writes the prototype's activations.pt",
    )
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--resume", action="store_true", help="finish an interrupted dump")
    mode.add_argument("--overwrite", action="store_true", help="replace an existing run folder")
    p.add_argument("--no_progress", action="store_true", help="hide the progress bar")
    from .atlas import add_engine_arguments

    add_engine_arguments(p)


def load_prompt_args(args: argparse.Namespace) -> list:
    from ..prompts import load_prompts, single_prompt

    given = [x for x in (args.prompts_json, args.prompts, args.single_prompt) if x is not None]
    if len(given) != 1:
        raise BadPromptsError(
            "give exactly one prompt source: --prompts_json FILE, --prompts FILE or "
            "--single_prompt TEXT"
        )
    if args.single_prompt is not None:
        return single_prompt(args.single_prompt)
    return load_prompts(args.prompts_json or args.prompts)


def run(args: argparse.Namespace) -> int:
    from ..capture import DumpConfig, dump

    if args.engine == "ray":
        from ..scale.ray_atlas import require_ray

        require_ray()  # the one-line install hint before anything is read
    prompts = load_prompt_args(args)
    cfg = DumpConfig(
        prompts=prompts,
        out_dir=Path(args.out_dir),
        model_name=args.model_name,
        device=args.device,
        model_dtype=args.model_dtype,
        save_dtype=args.save_dtype,
        layers=parse_layers(args.layers),
        batch_size=args.batch_size,
        max_batch_tokens=args.max_batch_tokens,
        max_seq_len=args.max_seq_len,
        truncate=args.truncate,
        prepend_bos=not args.no_prepend_bos,
        check_finite=args.check_finite,
        save_format=args.save_format,
        resume=args.resume,
        overwrite=args.overwrite,
        progress=not args.no_progress,
    )
    from ..models.specs import check_layers

    check_layers(cfg.model_name, cfg.layers)  # from config.json: before any load
    if args.engine == "ray":
        from ..scale.pool import resume_command
        from ..scale.ray_dump import RayOptions, dump_ray

        opts = RayOptions(address=args.ray_address, workers=args.workers)
        opts.resume_command = resume_command(getattr(args, "_argv", None))
        result = dump_ray(cfg, opts)
    else:
        result = dump(cfg)
    for note in result.notes:
        print(f"note: {note}")
    if result.already_complete:
        print(
            f"{result.run_dir} is already complete ({result.n_prompts} prompts, every shard "
            "matches its sha256): nothing to do"
        )
    else:
        kept = f", {result.shards_kept} shards kept from before" if result.shards_kept else ""
        print(f"wrote {result.run_dir} ({result.n_prompts} prompts{kept})")
    return 0
