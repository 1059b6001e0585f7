"""``neuron``: one neuron of an atlas in the terminal (stats, coloured examples) or as JSON."""

from __future__ import annotations

import argparse
import json
import math
from typing import Any

import numpy as np

NAME = "neuron"
HELP = "show one neuron of an atlas: statistics, top/bottom examples as coloured token strips"
ORDER = 16
BACKGROUND = (0, 0, 0)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("neuron", help="neuron id: L17/N345, 17:345 or 17/345")
    p.add_argument(
        "--atlas", required=True, help="atlas folder (made by `neuron-signatures atlas`)"
    )
    p.add_argument("--examples", type=int, default=5, help="top and bottom examples to show")
    p.add_argument("--samples", type=int, default=2, help="samples shown per interval")
    p.add_argument("--json", action="store_true", help="print the whole record as JSON")


def run(args: argparse.Namespace) -> int:
    from ..atlas import open_atlas
    from ..neurons import parse_neuron

    atlas = open_atlas(args.atlas)
    nid = parse_neuron(args.neuron, atlas.n_layers, atlas.d_mlp)
    rec = atlas.neuron(nid.layer, nid.index)
    if args.json:
        print(json.dumps(_finite(rec.to_dict()), ensure_ascii=False, indent=1))
        return 0
    _show(rec, atlas, args.examples, args.samples)
    return 0


def _finite(obj: Any) -> Any:
    """JSON has no NaN / Infinity: write them as null."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_finite(v) for v in obj]
    return obj


def strip(tokens: list[str], acts: list[float], scale: float, mark: int | None = None) -> Any:
    """A rich ``Text`` of tokens on their heat colour (shared rule of :mod:`..heat`), blended
    over a black background; ``mark`` underlines one token."""
    from rich.text import Text

    from ..heat import colors, opacity
    from ..tokens import token_display

    v = np.asarray(acts, dtype=np.float64)
    op = opacity(v, scale)[:, None]
    rgb = np.rint(op * colors(v) + (1 - op) * np.asarray(BACKGROUND)).astype(int)
    out = Text()
    for i, (tok, c) in enumerate(zip(tokens, rgb, strict=True)):
        ink = "black" if float(c @ np.array([0.299, 0.587, 0.114])) > 140 else "white"
        style = f"{ink} on rgb({c[0]},{c[1]},{c[2]})" + (" bold underline" if i == mark else "")
        out.append(token_display(tok), style=style)
    return out


def _show(rec: Any, atlas: Any, n_examples: int, n_samples: int) -> None:
    from rich.console import Console

    con = Console(highlight=False)
    s = rec.stats
    m = atlas.manifest
    con.print(
        f"[bold]L{rec.layer}/N{rec.index}[/bold]  {atlas.model_name}  atlas {atlas.root} "
        f"({s.count} tokens, corpus {m['corpus']['source']})"
    )
    con.print(
        f"mean {s.mean:.4g}  std {s.std:.4g}  min {s.min:.4g}  max {s.max:.4g}  "
        f"density >0 {s.frac_positive:.1%}  >{s.threshold:g} {s.frac_above_threshold:.1%}"
    )
    scale = max(abs(s.max), abs(s.min)) if s.count else 0.0
    for title, examples in (("top", rec.top), ("bottom", rec.bottom)):
        con.print(f"\n[bold]{title} examples[/bold]")
        for ex in examples[:n_examples]:
            where = f"doc {ex.document}" + (f" {ex.meta['topic']}" if "topic" in ex.meta else "")
            con.print(f"{ex.value:+.4g}  ({where}, window {ex.window} pos {ex.position})")
            con.print(strip(ex.tokens, ex.acts or [], scale, ex.position))
    if rec.intervals:
        con.print("\n[bold]intervals[/bold]")
    for iv in rec.intervals:
        con.print(iv.label)
        for ex in iv.samples[:n_samples]:
            lo, hi = max(0, ex.position - 8), ex.position + 4
            acts = [0.0] * len(ex.tokens)
            acts[ex.position] = ex.value
            con.print(
                "   ",
                strip(ex.tokens[lo:hi], acts[lo:hi], scale, ex.position - lo),
                f" {ex.value:+.3g}",
            )
    if rec.write_top:
        con.print("\n[bold]write scores[/bold] (logits of the write direction)")
        for title, ws in (("promotes", rec.write_top), ("suppresses", rec.write_bottom)):
            con.print(f"{title}: " + "  ".join(f"{w.token!r} {w.score:+.3g}" for w in ws))
