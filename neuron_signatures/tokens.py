"""Token strings: the prototype's ASCII form, a lossless visible form, and functional tokens."""

from __future__ import annotations

import unicodedata

SPIECE_SPACE = "\u2581"  # SentencePiece's word-boundary marker "▁"

# The prototype's default functional-token set (compared after stripping spaces, lower-cased):
# articles, copulas, common prepositions, conjunctions, pronouns and punctuation.
DEFAULT_FUNCTIONAL_TOKENS: frozenset[str] = frozenset(
    """
    a an the
    is are was were be been being am 's
    of in on at to for from by with about into over under as than
    and or but nor so yet if that which who whom whose what when where while because
    it its he she they them his her their this these those we us our you your i me my
    , . ; : ! ? - -- ' " ( ) [ ] { } ... <n>
    """.split()
)


def token_ascii(token: str) -> str:
    """The prototype's sanitised token form, kept byte-for-byte for old scripts.

    ``▁`` becomes a space; newline, CR and tab become ``<n>``, ``<r>``, ``<t>``; other control
    characters are dropped; any other non-ASCII character becomes ``<?>``.
    """
    out: list[str] = []
    for ch in token.replace(SPIECE_SPACE, " "):
        if ch == "\n":
            out.append("<n>")
        elif ch == "\r":
            out.append("<r>")
        elif ch == "\t":
            out.append("<t>")
        elif unicodedata.category(ch) == "Cc":
            continue
        elif ord(ch) > 127:
            out.append("<?>")
        else:
            out.append(ch)
    return "".join(out)


def token_display(token: str) -> str:
    """A lossless, printable form of a token for UIs: whitespace and control characters visible.

    Unlike :func:`token_ascii` nothing is dropped and non-ASCII letters are kept: newline shows as
    ``\\n``, tab as ``\\t``, other control characters as ``\\xNN``, a backslash as ``\\\\``.
    """
    out: list[str] = []
    for ch in token.replace(SPIECE_SPACE, " "):
        if ch == "\\":
            out.append("\\\\")
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\r":
            out.append("\\r")
        elif ch == "\t":
            out.append("\\t")
        elif unicodedata.category(ch) in ("Cc", "Cf", "Zl", "Zp"):
            out.append(f"\\x{ord(ch):02x}" if ord(ch) < 256 else f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    return "".join(out)


def is_functional(token: str, functional: frozenset[str] = DEFAULT_FUNCTIONAL_TOKENS) -> bool:
    """Whether a token (piece or ascii form) is functional: in the set, or pure punctuation."""
    norm = token_ascii(token).strip().lower()
    if norm in functional:
        return True
    return bool(norm) and all(unicodedata.category(c).startswith("P") for c in norm)
