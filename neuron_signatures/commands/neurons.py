"""``neurons``: find neurons of an atlas by what they do: text search over their explanations,
filters on layers, scores, density and side, sorted; a table or JSON (the atlas's neuron index)."""

from __future__ import annotations

import argparse
import json
import shutil
from dataclasses import asdict
from typing import Any

NAME = "neurons"
HELP = (
    "find neurons by what they do: search the explanations of an atlas (run `explain` first), "
    "offline and LLM ones, filter by layer, score, density, side and explainer, sort; a table "
    "or --json"
)
ORDER = 18


def add_arguments(p: argparse.ArgumentParser) -> None:
    from ..index import SORTS
    from ..index.query import EXPLAINER_CHOICES

    p.add_argument(
        "--atlas", required=True, help="atlas folder (made by `neuron-signatures atlas`)"
    )
    p.add_argument(
        "--query", default=None, help='words every explanation must contain, e.g. "capital city"'
    )
    p.add_argument("--layers", default=None, help="only these layers, e.g. 5,10-17")
    p.add_argument(
        "--min_score",
        type=float,
        default=None,
        help="only explanations whose top-and-random score is at least this",
    )
    p.add_argument(
        "--min_density", type=float, default=None, help="only neurons positive on >= this share"
    )
    p.add_argument(
        "--max_density", type=float, default=None, help="only neurons positive on <= this share"
    )
    p.add_argument(
        "--side",
        choices=["positive", "negative"],
        default=None,
        help="only this side's explanation",
    )
    p.add_argument(
        "--explainer",
        default="all",
        help=f"only the explanations of one explainer: {' | '.join(EXPLAINER_CHOICES)} "
        "(default all: the offline token lookup's and the LLM's, `explain --explainer llm`)",
    )
    p.add_argument(
        "--sort",
        default=None,
        help=f"one of {', '.join(SORTS)} (default: score with --query/--min_score/--side, "
        "else layer; detection and fuzzing: the LLM's balanced accuracies)",
    )
    p.add_argument("--limit", type=int, default=50, help="rows shown (default 50)")
    p.add_argument("--json", action="store_true", help="print the rows as JSON")


def _num(x: float | None, fmt: str = "{:.3f}") -> str:
    return "-" if x is None else fmt.format(x)


def table(rows: list[Any], width: int) -> list[str]:
    """Aligned lines: id, side, explainer (with the LLM's model), score, floor, then detection
    and fuzzing when a row has them, density, max, and the explanation cut to fit."""
    classify = any(r.detection is not None or r.fuzzing is not None for r in rows)
    head: tuple[str, ...] = ("neuron", "side", "explainer", "score", "floor")
    head += ("detection", "fuzzing") if classify else ()
    head += ("density", "max")
    cells = [
        (
            r.id,
            r.side or "-",
            r.source,
            _num(r.score),
            _num(r.floor),
            *((_num(r.detection), _num(r.fuzzing)) if classify else ()),
            _num(r.density, "{:.4f}"),
            _num(r.max, "{:.3g}"),
        )
        for r in rows
    ]
    widths = [max(len(c[i]) for c in [head, *cells]) for i in range(len(head))]
    lines = ["  ".join(h.ljust(w) for h, w in zip(head, widths, strict=True)) + "  explanation"]
    for r, c in zip(rows, cells, strict=True):
        left = "  ".join(x.ljust(w) for x, w in zip(c, widths, strict=True)) + "  "
        text = r.explanation or "-"
        room = max(20, width - len(left))
        lines.append(left + (text if len(text) <= room else text[: room - 1] + "…"))
    return lines


def run(args: argparse.Namespace) -> int:
    from ..index import IndexQuery, search_neurons
    from ..neurons import parse_layers

    q = IndexQuery(
        text=args.query,
        layers=parse_layers(args.layers),
        min_score=args.min_score,
        min_density=args.min_density,
        max_density=args.max_density,
        side=args.side,
        sort=args.sort,
        limit=args.limit,
        explainer=args.explainer,
    )
    res = search_neurons(args.atlas, q)
    if args.json:
        out = {
            "atlas": str(args.atlas),
            "query": asdict(q),
            "took_ms": round(res.took_ms, 3),
            "rows": [r.to_dict() for r in res.rows],
        }
        print(json.dumps(out, indent=1, ensure_ascii=False, allow_nan=False))
        return 0
    if not res.rows:
        print("no neuron matches these filters")
        return 0
    width = shutil.get_terminal_size((160, 24)).columns
    print("\n".join(table(res.rows, width)))
    print(f"{len(res.rows)} rows in {res.took_ms:.1f} ms")
    return 0
