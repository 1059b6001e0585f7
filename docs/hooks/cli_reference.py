"""MkDocs hook: the command reference page, generated from ``neuron_signatures.cli``'s parsers.

The page (``reference/cli.md``) is built from the argparse parsers at every ``mkdocs build``, so
it cannot drift from the code: every command, its description, its usage line and a table of its
flags with their help and defaults. A flag without help stops the build (and
``tests/test_docs.py`` fails), so every flag a user can type is documented.
"""

from __future__ import annotations

import argparse
import os
from typing import Any

PAGE = "reference/cli.md"


class MissingHelpError(RuntimeError):
    """A command or flag has no help text: give it ``help=...`` in its ``add_arguments``."""


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ").strip()


def _expand_help(parser: argparse.ArgumentParser, action: argparse.Action) -> str:
    formatter = parser._get_formatter()
    return formatter._expand_help(action) if action.help else ""


def _flag_row(parser: argparse.ArgumentParser, action: argparse.Action, command: str) -> str:
    names = action.option_strings or [action.metavar or action.dest]
    if not action.help or action.help == argparse.SUPPRESS:
        raise MissingHelpError(
            f"neuron-signatures {command}: {'/'.join(names)} has no help text: add help=..."
        )
    metavar = ""
    if action.nargs != 0:
        mv = action.metavar or (action.dest.upper() if action.option_strings else "")
        if action.choices is not None and action.metavar is None:
            mv = "{" + ",".join(str(c) for c in action.choices) + "}"
        metavar = f" {mv}" if mv and action.option_strings else ""
    flag = ", ".join(f"`{n}{metavar}`" for n in names)
    default = ""
    if (
        action.option_strings
        and action.nargs != 0
        and action.default not in (None, argparse.SUPPRESS)
    ):
        default = f"`{action.default}`"
    required = "yes" if getattr(action, "required", False) or not action.option_strings else ""
    help_text = _expand_help(parser, action)
    return f"| {_cell(flag)} | {_cell(help_text)} | {_cell(default)} | {required} |"


def command_parsers() -> list[tuple[str, str, argparse.ArgumentParser]]:
    """``(name, help, parser)`` of every subcommand, in the CLI's own order."""
    parser = _root_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    helps = {a.dest: a.help or "" for a in sub._choices_actions}
    return [(name, helps.get(name, ""), p) for name, p in sub.choices.items()]


def _root_parser() -> argparse.ArgumentParser:
    os.environ["COLUMNS"] = "100"  # usage lines wrap at the terminal's width: fix it
    from neuron_signatures.cli import build_parser

    return build_parser()


def render_cli_reference() -> str:
    """The Markdown of the command reference (raises :class:`MissingHelpError`)."""
    out = [
        "# Command reference",
        "",
        "Generated from the argparse parsers of `neuron_signatures/cli.py` at every docs build,",
        "so it always matches the code. `neuron-signatures COMMAND --help` prints the same.",
        "Bad input ends with one line `error: ...` and exit code 2.",
        "",
        "| command | what it does |",
        "|---|---|",
    ]
    cmds = command_parsers()
    root = _root_parser()
    for name, help_text, _ in cmds:
        if not help_text:
            raise MissingHelpError(f"neuron-signatures {name} has no help text: set HELP")
        out.append(f"| [`{name}`](#{name}) | {_cell(help_text)} |")
    out += ["", "Global flags, before the command:", "", "| flag | meaning | default | required |"]
    out.append("|---|---|---|---|")
    out += [
        _flag_row(root, a, "")
        for a in root._actions
        if a.option_strings and not isinstance(a, argparse._HelpAction)
    ]
    for name, help_text, p in cmds:
        usage = p.format_usage().removeprefix("usage: ").strip()
        out += ["", f"## `{name}` {{#{name}}}", "", _cell(p.description or help_text), ""]
        out += ["```text", usage, "```", ""]
        rows = [
            _flag_row(p, a, name) for a in p._actions if not isinstance(a, argparse._HelpAction)
        ]
        if rows:
            out += ["| flag | meaning | default | required |", "|---|---|---|---|", *rows]
    return "\n".join(out) + "\n"


def on_files(files: Any, config: Any) -> Any:
    """Add the generated page to the site's files (MkDocs 1.6 hook)."""
    from mkdocs.structure.files import File

    files.append(File.generated(config, PAGE, content=render_cli_reference()))
    return files
