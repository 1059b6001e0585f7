"""The browser's keys: tables that make the bindings, the help screens and the README.

:data:`KEYS` drives the run browser, :data:`ATLAS_KEYS` the atlas view (``browse --atlas``).
"""

from __future__ import annotations

from dataclasses import dataclass

from textual.binding import Binding


@dataclass(frozen=True)
class Key:
    """One key binding of the main screen.

    Attributes:
        key: Textual key name(s), comma-separated.
        label: how the help and the README write it.
        action: the screen action, with arguments, e.g. ``layer(-1)``.
        help: what it does.
        group: heading in the help screen.
        footer: short label for the footer, or "" to keep it out of the footer.
    """

    key: str
    label: str
    action: str
    help: str
    group: str
    footer: str = ""


KEYS: tuple[Key, ...] = (
    Key("left", "←", "layer(-1)", "previous layer", "Navigate"),
    Key("right", "→", "layer(1)", "next layer", "Navigate"),
    Key("up", "↑", "token(-1)", "previous token (ctx_idx - 1)", "Navigate"),
    Key("down", "↓", "token(1)", "next token (ctx_idx + 1)", "Navigate"),
    Key("n", "n", "neuron(1)", "next neuron", "Navigate"),
    Key("b", "b", "neuron(-1)", "previous neuron", "Navigate"),
    Key("pagedown", "PgDn", "neuron(100)", "neuron + 100", "Navigate"),
    Key("pageup", "PgUp", "neuron(-100)", "neuron - 100", "Navigate"),
    Key("]", "]", "prompt(1)", "next prompt", "Navigate"),
    Key("[", "[", "prompt(-1)", "previous prompt", "Navigate"),
    Key("a", "a", "toggle_all", "all tokens / window of ctx ± --window", "Navigate", "all/window"),
    Key("g", "g", "goto_neuron", "go to neuron…", "Jump", "neuron"),
    Key("l", "l", "goto_layer", "go to layer…", "Jump", "layer"),
    Key("c", "c", "goto_ctx", "go to token position (ctx_idx)…", "Jump", "ctx"),
    Key("/", "/", "search", "search prompts by id or text…", "Jump", "search"),
    Key("p", "p", "pick_prompt", "pick a prompt from the list…", "Jump", "prompts"),
    Key("t", "t", "focus_ranked", "focus the ranked panel (Enter jumps)", "Ranked", "ranked"),
    Key("}", "}", "ranked(1)", "next neuron of the ranking", "Ranked"),
    Key("{", "{", "ranked(-1)", "previous neuron of the ranking", "Ranked"),
    Key("r", "r", "next_ranking", "show the next ranking file", "Ranked"),
    Key("s", "s", "next_signatures", "signatures: all files (newest wins) / each", "Ranked"),
    Key("escape", "Esc", "leave_panel", "leave the ranked panel / close a dialog", "Other"),
    Key("question_mark", "?", "help", "this help", "Other", "help"),
    Key("q", "q", "quit", "quit", "Other", "quit"),
)

ATLAS_KEYS: tuple[Key, ...] = (
    Key("left", "←", "layer(-1)", "previous layer of the atlas", "Navigate"),
    Key("right", "→", "layer(1)", "next layer of the atlas", "Navigate"),
    Key("n", "n", "neuron(1)", "next neuron", "Navigate"),
    Key("b", "b", "neuron(-1)", "previous neuron", "Navigate"),
    Key("pagedown", "PgDn", "neuron(100)", "neuron + 100", "Navigate"),
    Key("pageup", "PgUp", "neuron(-100)", "neuron - 100", "Navigate"),
    Key("up", "↑", "scroll(-1)", "scroll the examples up", "Navigate"),
    Key("down", "↓", "scroll(1)", "scroll the examples down", "Navigate"),
    Key("g", "g", "goto_neuron", "go to neuron… (L17/N345, 17:345 or an index)", "Jump", "neuron"),
    Key("l", "l", "goto_layer", "go to layer…", "Jump", "layer"),
    Key("f", "f", "find_explained", "find neurons by explanation… (Enter opens)", "Jump", "find"),
    Key("x", "x", "toggle_bottom", "show / hide the bottom examples", "View", "bottom"),
    Key("e", "e", "examples", "atlas examples / the run's prompts (with --run_dir)", "View", "run"),
    Key("question_mark", "?", "help", "this help", "Other", "help"),
    Key("q", "q", "quit", "quit", "Other", "quit"),
)

# Added to the run browser when an atlas is open too (``browse --atlas A --run_dir R``).
LINKED_KEYS: tuple[Key, ...] = (
    Key("e", "e", "examples", "the atlas's examples of this neuron", "Atlas", "atlas"),
)

PANEL_KEYS: tuple[tuple[str, str], ...] = (
    ("↑ / ↓, PgUp / PgDn, Home / End", "move in the ranked panel (while it has focus)"),
    ("Enter", "jump to the highlighted ranked neuron"),
)


def bindings(keys: tuple[Key, ...] = KEYS) -> list[Binding]:
    """Textual bindings of a main screen, built from ``keys`` (the run browser's by default)."""
    return [
        Binding(k.key, k.action, k.footer or k.help, show=bool(k.footer), key_display=k.label)
        for k in keys
    ]


def help_text(linked: bool = False) -> str:
    """The run browser's help screen: every key, one per line, grouped (``linked``: with the
    keys it has when an atlas is open too)."""
    lines = _key_lines("Activation browser — keys", KEYS)
    lines += ["", "Ranked panel:"]
    lines += [f"  {label}: {what}" for label, what in PANEL_KEYS]
    if linked:
        lines += ["", *_key_lines("With --atlas:", LINKED_KEYS)[2:]]
    return "\n".join(lines)


def atlas_help_text() -> str:
    """The atlas view's help screen."""
    return "\n".join(_key_lines("Atlas view — keys", ATLAS_KEYS))


def _key_lines(title: str, keys: tuple[Key, ...]) -> list[str]:
    lines: list[str] = [title, ""]
    group = ""
    for k in keys:
        if k.group != group:
            if group:
                lines.append("")
            group = k.group
            lines.append(f"{group}:")
        lines.append(f"  {k.label:<6} {k.help}")
    return lines


def markdown_table(keys: tuple[Key, ...] = KEYS) -> str:
    """The key table for the README (the run browser's, or the atlas view's)."""
    rows = ["| key | action |", "|---|---|"]
    for k in keys:
        label = k.label.replace("|", "\\|")
        rows.append(f"| `{label}` | {k.help} |")
    if keys is KEYS:
        rows += [f"| {label} | {what} |" for label, what in PANEL_KEYS]
    return "\n".join(rows)
