"""``export``: write an atlas's neurons for other tools: Neuronpedia, OpenAI NeuronRecord, HTML."""

from __future__ import annotations

import argparse
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import BadArgumentError, RunExistsError

if TYPE_CHECKING:
    from ..atlas import Atlas

NAME = "export"
HELP = (
    "export an atlas's neurons: Neuronpedia JSON batches (with explanations when the atlas has "
    "them), OpenAI NeuronRecord files ({layer}/{neuron}.json), OpenAI NeuronSimulationResults "
    "of the explanations ({layer}/{neuron}.jsonl), or one static HTML page"
)
ORDER = 47
FOLDER_FORMATS = ("neuronpedia", "neuron_record", "explanations_openai")  # into --out_dir
FORMATS = (*FOLDER_FORMATS, "html")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--atlas", required=True, help="atlas folder (made by `neuron-signatures atlas`)"
    )
    p.add_argument("--format", required=True, choices=FORMATS, help="what to write")
    p.add_argument(
        "--out_dir", help="folder to write (neuronpedia, neuron_record, explanations_openai)"
    )
    p.add_argument("--out", help="HTML file to write (html)")
    p.add_argument(
        "--neurons",
        help="neurons to export: L17/N345,17:346 (default: every neuron of --layers, or all)",
    )
    p.add_argument("--layers", help="layers to export, e.g. 0-5 or 3,7 (default: the atlas's)")
    p.add_argument("--run_dir", help="html: a probe run whose panels join each neuron (optional)")
    p.add_argument("--model_id", help="neuronpedia: the model id to write (default: the atlas's)")
    p.add_argument(
        "--batch_size", type=int, default=None, help="neuronpedia: neurons per batch file (128)"
    )
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="replace a previous export: the whole export in --out_dir (it may hold only what "
        "an export of --format writes; nothing else is deleted) or the --out file",
    )
    p.add_argument("--no_progress", action="store_true", help="hide the progress bar")


def _check_flags(args: argparse.Namespace) -> None:
    fmt = args.format
    misplaced = [
        (args.out is not None and fmt != "html", "--out", "html (use --out_dir)"),
        (args.out_dir is not None and fmt == "html", "--out_dir", "the folder formats"),
        (args.run_dir is not None and fmt != "html", "--run_dir", "html"),
        (args.batch_size is not None and fmt != "neuronpedia", "--batch_size", "neuronpedia"),
        (args.model_id is not None and fmt != "neuronpedia", "--model_id", "neuronpedia"),
    ]
    for bad, flag, where in misplaced:
        if bad:
            raise BadArgumentError(f"{flag} is not used by --format {fmt}: it is for {where}")
    if fmt == "html":
        if not args.out:
            raise BadArgumentError("--format html needs --out FILE.html")
        if args.neurons is None and args.layers is None:
            raise BadArgumentError(
                "--format html needs --neurons (e.g. L17/N345,L16/N1682) or --layers"
            )
    elif not args.out_dir:
        raise BadArgumentError(f"--format {fmt} needs --out_dir FOLDER")
    if args.batch_size is not None and args.batch_size < 1:
        raise BadArgumentError(f"--batch_size {args.batch_size} must be at least 1")


def check_target(path: Path, fmt: str, overwrite: bool) -> None:
    """Refuse to write over existing data unless ``--overwrite``, and an output that cannot be
    written (checked before the atlas opens; the probe leaves nothing behind)."""
    from ..export.outdir import check_out_dir
    from ..store.writable import check_writable

    if fmt not in FOLDER_FORMATS:
        if path.is_dir():
            raise BadArgumentError(f"--out {path} is a folder: name an .html file")
        if path.exists() and not overwrite:
            raise RunExistsError(f"{path} already exists: pass --overwrite or another --out")
        check_writable(path.parent, "--out")
        return
    check_out_dir(path, fmt, overwrite)
    check_writable(path)


@contextmanager
def progress_bar(enabled: bool, total: int, desc: str) -> Iterator[Callable[[int], None] | None]:
    """A tqdm bar over neurons (``None`` when hidden); yields its ``update``."""
    if not enabled:
        yield None
        return
    from tqdm import tqdm

    bar = tqdm(total=total, unit="neuron", desc=desc, dynamic_ncols=True)
    try:
        yield bar.update
    finally:
        bar.close()


def _export(
    args: argparse.Namespace,
    atlas: Atlas,
    neurons: list[tuple[int, int]],
    progress: Callable[[int], None] | None,
) -> Path:
    if args.format in FOLDER_FORMATS:
        from ..export.outdir import swap_in

        target = Path(args.out_dir)
        with swap_in(target) as tmp:
            written = _export_folder(args, atlas, neurons, tmp, progress)
        return target / written.relative_to(tmp)
    from ..export.html import export_html

    run_dir = Path(args.run_dir) if args.run_dir else None
    return export_html(atlas, neurons, Path(args.out), run_dir=run_dir, progress=progress)


def _export_folder(
    args: argparse.Namespace,
    atlas: Atlas,
    neurons: list[tuple[int, int]],
    out_dir: Path,
    progress: Callable[[int], None] | None,
) -> Path:
    if args.format == "neuron_record":
        from ..export.neuron_record import export_neuron_records

        return export_neuron_records(atlas, neurons, out_dir, progress=progress)
    if args.format == "explanations_openai":
        from ..export.explanations_openai import export_explanations_openai

        return export_explanations_openai(atlas, neurons, out_dir, progress=progress)
    from ..export.neuronpedia import export_neuronpedia

    return export_neuronpedia(
        atlas,
        neurons,
        out_dir,
        model_id=args.model_id,
        batch_size=args.batch_size or 128,
        progress=progress,
    )


def run(args: argparse.Namespace) -> int:
    from ..atlas import open_atlas
    from ..export.select import parse_neurons

    _check_flags(args)
    check_target(
        Path(args.out if args.format == "html" else args.out_dir), args.format, args.overwrite
    )
    atlas = open_atlas(args.atlas)
    neurons = parse_neurons(args.neurons, args.layers, atlas)
    if args.run_dir is not None:
        from ..store import open_run

        open_run(args.run_dir)  # a missing or unfinished run fails here, in one line
    with progress_bar(not args.no_progress, len(neurons), f"export {args.format}") as progress:
        out = _export(args, atlas, neurons, progress)
    print(f"wrote {len(neurons)} neurons as {args.format} to {out}")
    return 0
