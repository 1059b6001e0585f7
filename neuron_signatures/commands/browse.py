"""``browse``: the terminal browser of a run (Textual); flags are checked before it starts."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..errors import BadArgumentError

NAME = "browse"
HELP = "browse a run's activations in the terminal: prompts, layers, neurons, ranked neurons"
ORDER = 40


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--run_dir", required=True, help="run folder (manifest.json + activations)")
    p.add_argument(
        "--prompt_idx",
        default="0",
        help="first prompt: index (negative counts from the end) or prompt id",
    )
    p.add_argument(
        "--layer", type=int, default=None, help="first layer (default: the first captured layer)"
    )
    p.add_argument(
        "--neuron",
        default="0",
        help="first neuron: an index in --layer (default 0), or L17/N1152 or 17:1152 (any layer)",
    )
    p.add_argument("--ctx_idx", type=int, default=0, help="first token position (default 0)")
    p.add_argument(
        "--window",
        type=int,
        default=15,
        help="rows shown each side of the cursor (default 15; ignored with all tokens)",
    )
    p.add_argument("--all_tokens", action="store_true", help="start showing every token")
    p.add_argument(
        "--screenshot",
        default=None,
        metavar="FILE.svg",
        help="render the first view headless into an SVG file and exit",
    )
    p.add_argument(
        "--screenshot_size",
        default="140x42",
        metavar="WxH",
        help="terminal size of --screenshot (default 140x42)",
    )


def build_app(args: argparse.Namespace):  # type: ignore[no-untyped-def]
    """Open the run and check every flag; raises a domain error before any UI starts."""
    from ..store import open_run
    from ..tui import BrowserApp, BrowserState

    run = open_run(args.run_dir)
    layer, neuron = _first_neuron(str(args.neuron), args.layer, run.n_layers, run.d_mlp)
    state = BrowserState(
        run,
        prompt=args.prompt_idx,
        layer=layer,
        neuron=neuron,
        ctx_idx=args.ctx_idx,
        window=args.window,
        show_all=args.all_tokens,
    )
    return BrowserApp(state)


def _first_neuron(
    text: str, layer: int | None, n_layers: int, d_mlp: int
) -> tuple[int | None, int]:
    """``--neuron`` as ``(layer, index)``: a bare index keeps ``--layer``; ``L17/N1152`` sets it."""
    from ..neurons import parse_neuron

    if text.strip().lstrip("+-").isdigit():
        return layer, int(text)
    nid = parse_neuron(text, n_layers, d_mlp, what="--neuron")
    if layer is not None and layer != nid.layer:
        raise BadArgumentError(f"--neuron {text} is in layer {nid.layer} but --layer is {layer}")
    return nid.layer, nid.index


def _size(text: str) -> tuple[int, int]:
    try:
        w, h = (int(x) for x in text.lower().split("x"))
    except ValueError:
        raise BadArgumentError(f"--screenshot_size {text!r} is not like 140x42") from None
    if w < 40 or h < 12:
        raise BadArgumentError(f"--screenshot_size {text!r} is too small: use at least 40x12")
    return w, h


def run(args: argparse.Namespace) -> int:
    size = _size(args.screenshot_size) if args.screenshot else None
    app = build_app(args)
    if args.screenshot is None:
        app.run()
        return 0
    out = Path(args.screenshot)

    async def shoot(pilot) -> None:  # type: ignore[no-untyped-def]
        await pilot.pause()
        app.save_screenshot(out.name, str(out.parent.resolve()))
        app.exit()

    out.parent.mkdir(parents=True, exist_ok=True)
    app.run(headless=True, size=size, auto_pilot=shoot)
    print(f"wrote {out}")
    return 0
