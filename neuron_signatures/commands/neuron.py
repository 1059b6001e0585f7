"""``neuron``: one neuron of an atlas in the terminal (stats, coloured examples) or as JSON, or a
search of the atlas for the neurons that peak on a token or fire on a text."""

from __future__ import annotations

import argparse
import json
import math
from typing import Any

import numpy as np

from ..errors import BadArgumentError

NAME = "neuron"
HELP = (
    "show one neuron of an atlas (statistics, top/bottom examples as coloured token strips), "
    "or search the atlas with --search_token / --search_text"
)
ORDER = 16
BACKGROUND = (0, 0, 0)
MARK = ("⟦", "⟧")  # around the example's token where no underline shows (piped, redirected)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "neuron", nargs="?", help="neuron id: L17/N345, 17:345 or 17/345 (not with a search)"
    )
    p.add_argument(
        "--atlas", required=True, help="atlas folder (made by `neuron-signatures atlas`)"
    )
    p.add_argument("--examples", type=int, default=5, help="top and bottom examples to show")
    p.add_argument("--samples", type=int, default=2, help="samples shown per interval")
    p.add_argument("--json", action="store_true", help="print the whole record as JSON")
    s = p.add_argument_group("search the atlas (instead of a neuron id)")
    s.add_argument(
        "--search_token",
        metavar="TOK",
        help="neurons whose top examples peak on this token ('Austin' also matches ' Austin')",
    )
    s.add_argument(
        "--search_text",
        metavar="TEXT",
        help="neurons this text activates, per token and overall (runs the atlas's model)",
    )
    s.add_argument("--top_n", type=int, default=None, help="neurons listed (default 50 / 10)")
    s.add_argument(
        "--rank_by",
        choices=["value", "frac_of_max"],
        default=None,
        help="--search_text ranking: activation (default), or activation / the neuron's atlas max",
    )
    s.add_argument("--layers", default=None, help="search only these layers, e.g. 5,10-17")
    s.add_argument("--device", default=None, help="--search_text model device (default auto)")


def run(args: argparse.Namespace) -> int:
    from ..atlas import open_atlas
    from ..neurons import parse_neuron

    searches = [f for f in ("search_token", "search_text") if getattr(args, f) is not None]
    if len(searches) > 1 or (searches and args.neuron):
        raise BadArgumentError("give one of a neuron id, --search_token or --search_text")
    if not searches and not args.neuron:
        raise BadArgumentError(
            "give a neuron id (e.g. L17/N345), --search_token TOK or --search_text TEXT"
        )
    if args.rank_by is not None and args.search_text is None:
        # refused rather than ignored: a ranking flag that changes nothing misleads the reader
        raise BadArgumentError(
            "--rank_by ranks the neurons of --search_text only: drop it, or search with "
            "--search_text TEXT"
        )
    atlas = open_atlas(args.atlas)
    if searches:
        return _search(atlas, args)
    nid = parse_neuron(args.neuron, atlas.n_layers, atlas.d_mlp)
    rec = atlas.neuron(nid.layer, nid.index)
    from ..explain.records import neuron_explanations

    found = neuron_explanations(atlas.root, nid.layer, nid.index)
    if args.json:
        out = rec.to_dict()
        for folder, expl in found.items():  # null: explained atlas, nothing for this neuron
            out[folder.replace("-", "_")] = expl.to_dict() if expl is not None else None
        print(json.dumps(_finite(out), ensure_ascii=False, indent=1))
        return 0
    _show(rec, atlas, args.examples, args.samples)
    for folder, expl in found.items():
        _show_explanations(folder, expl)
    return 0


def _show_explanations(folder: str, expl: Any) -> None:
    """The explanation of each side with its scores, floors and held-out sizes."""
    from rich.console import Console
    from rich.markup import escape

    from ..explain.records import score_lines

    con = Console(highlight=False)
    con.print(f"\n[bold]{folder}[/bold]")
    if expl is None:
        con.print("no explanation for this neuron (nothing on either side, or layer not explained)")
        return
    params = ", ".join(f"{k} {v}" for k, v in expl.explainer.items() if k != "name")
    con.print(escape(f"explainer {expl.explainer.get('name', '?')} ({params})"))
    if expl.error:
        con.print(escape(f"error: {expl.error} (rerun explain with --resume to retry it)"))
    for side in expl.sides:
        con.print(
            f"[bold]{side['side']}[/bold] ({side['explainer']}): {escape(side['explanation'])}"
        )
        for line in score_lines(side):
            con.print(f"   {line}")


def _finite(obj: Any) -> Any:
    """JSON has no NaN / Infinity: write them as null."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_finite(v) for v in obj]
    return obj


def strip(
    tokens: list[str],
    acts: list[float],
    scale: float,
    mark: int | None = None,
    brackets: bool = False,
) -> Any:
    """A rich ``Text`` of tokens on their heat colour (shared rule of :mod:`..heat`), blended
    over a black background; ``mark`` underlines one token, and with ``brackets`` also wraps it
    in :data:`MARK` (the styles vanish when the output is not a terminal)."""
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
        shown = token_display(tok)
        if brackets and i == mark:
            shown = f"{MARK[0]}{shown}{MARK[1]}"
        out.append(shown, style=style)
    return out


def _show(rec: Any, atlas: Any, n_examples: int, n_samples: int) -> None:
    from rich.console import Console

    con = Console(highlight=False)
    brackets = not con.is_terminal
    s = rec.stats
    m = atlas.manifest
    con.print(
        f"[bold]L{rec.layer}/N{rec.index}[/bold]  {atlas.model_name}  atlas {atlas.root} "
        f"({s.count} tokens, corpus {m['corpus']['source']})"
    )
    con.print(
        f"mean {s.mean:.4g}  std {s.std:.4g}  skew {s.skewness:.3g}  kurt {s.kurtosis:.3g}  "
        f"min {s.min:.4g}  max {s.max:.4g}  density >0 {s.frac_positive:.1%}  "
        f">{s.threshold:g} {s.frac_above_threshold:.1%}"
        + (f"  non-finite {s.nonfinite} (moments NaN)" if s.nonfinite else "")
    )
    scale = max(abs(s.max), abs(s.min)) if s.count else 0.0
    for title, examples in (("top", rec.top), ("bottom", rec.bottom)):
        con.print(f"\n[bold]{title} examples[/bold]")
        for ex in examples[:n_examples]:
            where = f"doc {ex.document}" + (f" {ex.meta['topic']}" if "topic" in ex.meta else "")
            con.print(f"{ex.value:+.4g}  ({where}, window {ex.window} pos {ex.position})")
            con.print(strip(ex.tokens, ex.acts or [], scale, ex.position, brackets))
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
                strip(ex.tokens[lo:hi], acts[lo:hi], scale, ex.position - lo, brackets),
                f" {ex.value:+.3g}",
            )
    if rec.write_top:
        con.print("\n[bold]write scores[/bold] (logits of the write direction)")
        for title, ws in (("promotes", rec.write_top), ("suppresses", rec.write_bottom)):
            con.print(f"{title}: " + "  ".join(f"{w.token!r} {w.score:+.3g}" for w in ws))


def _search(atlas: Any, args: argparse.Namespace) -> int:
    from dataclasses import asdict

    from ..atlas.search import load_atlas_model
    from ..neurons import parse_layers

    layers = parse_layers(args.layers)
    top = {"top_n": args.top_n} if args.top_n is not None else {}
    if args.search_token is not None:
        found: Any = atlas.search_token(args.search_token, layers=layers, **top)
    else:
        _check_text_search(atlas, args.search_text, args.top_n, layers)
        lm = load_atlas_model(atlas, args.device)
        found = atlas.search_text(
            args.search_text, lm=lm, rank_by=args.rank_by or "value", layers=layers, **top
        )
    if args.json:
        print(json.dumps(_finite(asdict(found)), ensure_ascii=False, indent=1))
    elif args.search_token is not None:
        _show_token_search(found, atlas)
    else:
        _show_text_search(found, atlas)
    return 0


def _check_text_search(atlas: Any, text: str, top_n: int | None, layers: list[int] | None) -> None:
    """What ``--search_text`` refuses, checked before its model loads (seconds)."""
    if not text:
        raise BadArgumentError("the text to search is empty: give some text, e.g. 'Austin, Texas'")
    if top_n is not None and top_n < 1:
        raise BadArgumentError(f"--top_n must be at least 1, got {top_n}")
    bad = sorted(set(layers or ()) - set(atlas.layers))
    if bad or layers == []:
        raise BadArgumentError(
            f"--layers {bad or '(none)'} are not in the atlas: pick from {atlas.layers}"
        )


def _show_token_search(found: Any, atlas: Any) -> None:
    from rich.console import Console
    from rich.table import Table

    con = Console(highlight=False)
    pieces = ", ".join(f"{atlas.token(i)!r} ({i})" for i in found.token_ids)
    con.print(
        f"token {found.query!r} = {pieces}: {len(found.hits)} neurons peak on it "
        f"(atlas {atlas.root}, {atlas.model_name})"
    )
    if not found.hits:
        con.print("no neuron has a top example on this token")
        return
    t = Table("rank", "neuron", "top examples on it", "atlas max")
    for i, h in enumerate(found.hits, 1):
        t.add_row(str(i), f"L{h.layer}/N{h.index}", f"{h.count}/{h.of}", f"{h.max_value:.4g}")
    con.print(t)
    _hint(con, atlas, found.hits[0])


def _show_text_search(found: Any, atlas: Any) -> None:
    from rich.console import Console
    from rich.table import Table

    from ..tokens import token_display

    con = Console(highlight=False)
    shown = [token_display(t) for t in found.tokens]
    con.print(f"text {found.text!r}: {len(shown)} tokens, ranked by {found.rank_by}")
    t = Table("rank", "neuron", "max on text", "of atlas max", "at", title="overall")
    for i, h in enumerate(found.overall, 1):
        t.add_row(
            str(i),
            f"L{h.layer}/N{h.index}",
            f"{h.value:+.4g}",
            _pct(h.frac_of_max),
            f"{h.position} {shown[h.position]!r}",
        )
    con.print(t)
    per = Table("pos", "token", "top neurons (value, of atlas max)", title="per token")
    for pos, hits in enumerate(found.per_token):
        cells = "  ".join(
            f"L{h.layer}/N{h.index} {h.value:+.3g} {_pct(h.frac_of_max)}" for h in hits
        )
        per.add_row(str(pos), repr(shown[pos]), cells or "(BOS: not in the atlas)")
    con.print(per)
    if found.overall:
        _hint(con, atlas, found.overall[0])


def _pct(frac: float) -> str:
    return f"{frac:.0%}" if math.isfinite(frac) else "-"


def _hint(con: Any, atlas: Any, hit: Any) -> None:
    con.print(f"show one: neuron-signatures neuron --atlas {atlas.root} L{hit.layer}/N{hit.index}")
