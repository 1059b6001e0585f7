"""Command line: ``neuron-signatures <command>``; each command lives in ``commands/<name>.py``.

A command module defines ``NAME``, ``HELP``, ``ORDER``, ``add_arguments(parser)`` and
``run(args) -> int``. Expected failures (:class:`NeuronSignaturesError`) print one line and exit 2;
bad flags too. ``main(argv)`` runs in-process so tests need no subprocess.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import pkgutil
import sys
from collections.abc import Sequence
from types import ModuleType

from . import __version__, commands
from .errors import NeuronSignaturesError

_RECHECK = "NEURON_SIGNATURES_RECHECK_MODEL"


class OneLineParser(argparse.ArgumentParser):
    """argparse that reports bad flags as one line (no usage block) and exit code 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def command_modules() -> list[ModuleType]:
    mods = [
        importlib.import_module(f"{commands.__name__}.{m.name}")
        for m in pkgutil.iter_modules(commands.__path__)
        if not m.name.startswith("_")
    ]
    return sorted((m for m in mods if hasattr(m, "NAME")), key=lambda m: (m.ORDER, m.NAME))


def build_parser() -> OneLineParser:
    parser = OneLineParser(
        prog="neuron-signatures",
        description="Dump, rank, attribute and browse the MLP neurons of Gemma models.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress details")
    parser.add_argument(
        "--recheck_model",
        action="store_true",
        help="run the model's hook self-check at this load even if a pass is cached "
        "(same as NEURON_SIGNATURES_RECHECK_MODEL=1)",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=OneLineParser)
    for mod in command_modules():
        p = sub.add_parser(mod.NAME, help=mod.HELP, description=mod.HELP)
        mod.add_arguments(p)
        p.set_defaults(_run=mod.run)
    return parser


def main(argv: Sequence[str] | None = None, prog_command: str | None = None) -> int:
    """Run one command; returns the exit code. ``prog_command`` prefixes argv (for shims)."""
    args_list = list(sys.argv[1:] if argv is None else argv)
    if prog_command:
        args_list = [prog_command, *args_list]
    parser = build_parser()
    args = parser.parse_args(args_list)
    args._argv = args_list  # the command line, for messages that quote a resume command
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING, format="%(message)s"
    )
    if not getattr(args, "_run", None):
        parser.print_help()
        return 2
    recheck = os.environ.get(_RECHECK)
    if args.recheck_model:  # read at every model load (models.verdict)
        os.environ[_RECHECK] = "1"
    try:
        return int(args._run(args) or 0)
    except NeuronSignaturesError as e:
        print(f"error: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("interrupted: finished shards are kept; re-run with --resume", file=sys.stderr)
        return 130
    finally:
        if recheck is None:
            os.environ.pop(_RECHECK, None)
        else:
            os.environ[_RECHECK] = recheck


def entry() -> None:
    """Console-script entry point."""
    sys.exit(main())
