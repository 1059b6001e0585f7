"""``browse``: the terminal browser of a run or an atlas (Textual); flags are checked first.

``--run_dir R`` browses the run's prompts; ``--atlas A`` shows the atlas's neurons (statistics,
top and bottom examples, write scores), and with ``--run_dir`` too, ``e`` switches between the
atlas's examples and the run's prompts on the same neuron.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import BadArgumentError, RunFormatError

if TYPE_CHECKING:
    from ..store import Run
    from ..tui import BrowserState

NAME = "browse"
HELP = (
    "browse a run's activations in the terminal (prompts, layers, neurons, ranked neurons), "
    "or an atlas's neurons (--atlas)"
)
ORDER = 40


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--run_dir", default=None, help="run folder (manifest.json + activations)")
    p.add_argument(
        "--atlas",
        default=None,
        help="atlas folder (made by `neuron-signatures atlas`): show its neurons; with --run_dir "
        "too, e switches between the atlas's examples and the run's prompts",
    )
    p.add_argument(
        "--prompt_idx",
        default="0",
        help="first prompt: index (negative counts from the end) or prompt id",
    )
    p.add_argument(
        "--layer",
        type=int,
        default=None,
        help="first layer (default: the first layer of the atlas, else of the run)",
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
    """Open the run and/or the atlas and check every flag; raises a domain error before any UI
    starts."""
    from ..store import open_run
    from ..tui import BrowserApp

    if args.atlas is not None:
        return _atlas_app(args)
    if args.run_dir is None:
        raise BadArgumentError(
            "browse needs --run_dir RUN (a run folder), --atlas ATLAS (an atlas folder) or both"
        )
    run = open_run(args.run_dir)
    layer, neuron = _first_neuron(str(args.neuron), args.layer, run.n_layers, run.d_mlp)
    return BrowserApp(_run_state(args, run, layer, neuron))


def _run_state(args: argparse.Namespace, run: Run, layer: int | None, neuron: int) -> BrowserState:
    """The run browser's state from the flags, on ``layer`` / ``neuron``."""
    from ..tui import BrowserState

    return BrowserState(
        run,
        prompt=args.prompt_idx,
        layer=layer,
        neuron=neuron,
        ctx_idx=args.ctx_idx,
        window=args.window,
        show_all=args.all_tokens,
    )


def _atlas_app(args: argparse.Namespace):  # type: ignore[no-untyped-def]
    """The atlas view on ``--neuron`` (read now, so a broken atlas fails before the UI), with
    the run beside it when ``--run_dir`` is given (on the same neuron when the run has it)."""
    from safetensors import SafetensorError

    from ..atlas import open_atlas
    from ..store import open_run
    from ..tui import AtlasApp, AtlasState

    atlas = open_atlas(args.atlas)
    layer, neuron = _first_neuron(str(args.neuron), args.layer, atlas.n_layers, atlas.d_mlp)
    state = AtlasState(atlas, layer=layer, neuron=neuron)
    run_state = None
    if args.run_dir is not None:
        run = open_run(args.run_dir)
        if (run.n_layers, run.d_mlp) != (atlas.n_layers, atlas.d_mlp):
            raise BadArgumentError(
                f"the atlas {args.atlas} ({atlas.model_name}: {atlas.n_layers} layers x "
                f"{atlas.d_mlp} neurons) and the run {args.run_dir} ({run.model_name}: "
                f"{run.n_layers} x {run.d_mlp}) are of different models: browse them apart"
            )
        same = state.layer in run.layers
        run_state = _run_state(
            args, run, state.layer if same else None, state.neuron if same else 0
        )
    try:
        state.record()
    except (OSError, SafetensorError) as e:
        raise RunFormatError(
            f"cannot read L{state.layer}/N{state.neuron} of the atlas {args.atlas} ({e}): "
            "build it again with `neuron-signatures atlas`"
        ) from None
    return AtlasApp(state, run_state)


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
