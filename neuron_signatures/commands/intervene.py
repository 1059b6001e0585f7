"""``intervene``: set / scale / add MLP neurons on a prompt and compare before and after."""

from __future__ import annotations

import argparse
import json
from typing import Any

from ._flags import add_model_arguments

NAME = "intervene"
HELP = (
    "edit neurons (--set / --scale / --add on blocks.L.mlp.hook_post) and compare the next-token "
    "prediction, listed tokens, KL and continuations before and after"
)
ORDER = 17


class _EditAction(argparse.Action):
    """``--set/--scale/--add NEURON=VALUE`` appended, in command-line order, to ``args.edits``."""

    def __call__(self, parser: Any, ns: argparse.Namespace, value: Any, opt: Any = None) -> None:
        ns.edits = [*(getattr(ns, "edits", None) or []), (self.const, str(value))]


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--prompt", required=True, help="the prompt text (BOS is added)")
    e = p.add_argument_group("edits: one set, applied in the order given (repeat each flag)")
    for op, what, example in (
        ("set", "write VALUE", "L17/N345=0 or 17:345=0"),
        ("scale", "multiply by VALUE", "L16/N1682=3"),
        ("add", "add VALUE", "L11/N441=+2.5"),
    ):
        e.add_argument(
            f"--{op}",
            action=_EditAction,
            const=op,
            dest="edits",
            metavar="NEURON=VALUE",
            help=f"{what}, e.g. {example}",
        )
    e.add_argument(
        "--also",
        action="append",
        default=[],
        metavar="SET",
        help="one more set, compared in the same batch: 'L3/N4=0; scale L5/N6=2; add L7/N1=1.5'",
    )
    e.add_argument(
        "--positions",
        default="last",
        help="last (default), all (generated positions too) or prompt positions such as 3,5",
    )
    o = p.add_argument_group("what to show")
    o.add_argument(
        "--tokens", default=None, help='tokens to list, "|"-separated: " Austin| Dallas"'
    )
    o.add_argument(
        "--tokens_id", type=int, action="append", default=[], help="a token id to list (repeat)"
    )
    o.add_argument("--top_k", type=int, default=10, help="next tokens shown per row (default 10)")
    o.add_argument("--generate", type=int, default=0, metavar="N", help="also generate N tokens")
    o.add_argument("--temperature", type=float, default=0.0, help="0 = greedy (default)")
    o.add_argument("--seed", type=int, default=0, help="sampling seed (temperature > 0)")
    o.add_argument("--json", action="store_true", help="print the result as JSON")
    m = p.add_argument_group("model (as in dump)")
    add_model_arguments(m)


def parse_sets(edits: list[tuple[str, str]] | None, also: list[str]) -> list[Any]:
    """The edit flags as one set, then each ``--also`` set (labels: after, or set 1, set 2...)."""
    from ..interventions import InterventionSet, parse_edit, parse_set

    groups = [tuple(parse_edit(v, op) for op, v in edits)] if edits else []
    groups += [parse_set(text, "").edits for text in also]
    if len(groups) == 1:
        return [InterventionSet(groups[0], "after")]
    return [InterventionSet(g, f"set {i + 1}") for i, g in enumerate(groups)]


def _check(args: argparse.Namespace) -> None:
    from ..errors import BadArgumentError
    from ..interventions.spec import check_prompt

    check_prompt(args.prompt)
    if args.generate < 0 or args.temperature < 0 or args.top_k < 1:
        raise BadArgumentError(
            "--generate and --temperature must be 0 or more, --top_k 1 or more: "
            f"got {args.generate}, {args.temperature}, {args.top_k}"
        )


def _check_neurons(model_name: str, sets: list[Any]) -> None:
    """Every edited neuron exists in the model, by its shape read without loading it (the run
    checks again against the loaded model when the shape is unknown beforehand)."""
    from ..interventions.spec import check_sets
    from ..models.specs import model_shape

    shape = model_shape(model_name)
    if shape is not None:
        check_sets(sets, shape.n_layers, shape.d_mlp)


def run(args: argparse.Namespace) -> int:
    from ..interventions import add_generation, parse_positions, run_interventions
    from ..interventions.report import format_report
    from ..interventions.run import listed_token_ids, prompt_token_ids
    from ..models import load_model, load_tokenizer

    _check(args)  # everything that needs no model, before the model loads
    sets = parse_sets(getattr(args, "edits", None), args.also)
    positions = parse_positions(args.positions)
    _check_neurons(args.model_name, sets)
    tokenizer = load_tokenizer(args.model_name)
    positions.resolve(len(prompt_token_ids(tokenizer, args.prompt)))
    listed = listed_token_ids(tokenizer, args.tokens, args.tokens_id)
    lm = load_model(args.model_name, args.device, args.model_dtype, tokenizer=tokenizer)
    res = run_interventions(lm, args.prompt, sets, positions, listed, args.top_k)
    if args.generate:
        add_generation(lm, res, sets, positions, args.generate, args.temperature, args.seed)
    print(json.dumps(res.to_json(), indent=2) if args.json else format_report(res))
    return 0
