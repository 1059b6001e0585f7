"""The browser's keys: one table that makes the bindings, the help screen and the README."""

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

PANEL_KEYS: tuple[tuple[str, str], ...] = (
    ("↑ / ↓, PgUp / PgDn, Home / End", "move in the ranked panel (while it has focus)"),
    ("Enter", "jump to the highlighted ranked neuron"),
)


def bindings() -> list[Binding]:
    """Textual bindings of the main screen, built from :data:`KEYS`."""
    return [
        Binding(k.key, k.action, k.footer or k.help, show=bool(k.footer), key_display=k.label)
        for k in KEYS
    ]


def help_text() -> str:
    """The help screen: every key, one per line, grouped."""
    lines: list[str] = ["Activation browser — keys", ""]
    group = ""
    for k in KEYS:
        if k.group != group:
            if group:
                lines.append("")
            group = k.group
            lines.append(f"{group}:")
        lines.append(f"  {k.label:<6} {k.help}")
    lines += ["", "Ranked panel:"]
    lines += [f"  {label}: {what}" for label, what in PANEL_KEYS]
    return "\n".join(lines)


def markdown_table() -> str:
    """The key table for the README."""
    rows = ["| key | action |", "|---|---|"]
    for k in KEYS:
        label = k.label.replace("|", "\\|")
        rows.append(f"| `{label}` | {k.help} |")
    rows += [f"| {label} | {what} |" for label, what in PANEL_KEYS]
    return "\n".join(rows)
