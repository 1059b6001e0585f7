r"""Token strings: the prototype's ASCII form, a lossless visible form, and the two token rules
every analysis shares: which tokens are *functional* and which can never *name* a neuron.

Both rules take the tokenizer's own piece (the run's lossless ``tokens``, e.g. ``"\u2581the"``,
``"\n"``, ``"<0x9A>"``) and normalise it once here, so the peaks analysis and the signatures see
the same answer for the same token.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable

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
    , . ; : ! ? - -- ' " ( ) [ ] { } ...
    <n> <r> <t>
    """.split()
)  # <n> <r> <t>: the ASCII forms of runs that stored only ``tokens_ascii`` (prototype runs)

# Byte-fallback pieces (<0x9A>) and special tokens: never names.
_SPECIAL = re.compile(
    r"^(?:<0x[0-9A-Fa-f]{2}>|</?s>|\[multimodal\]"
    r"|<(?:bos|eos|pad|unk|mask|cls|sep|unused\d+|(?:start|end)_of_\w+|\w+_soft_token)>)$"
)
# Characters nobody can read as a name: control, format (zero-width joiner, soft hyphen),
# surrogate, private-use, unassigned, combining marks (variation selectors such as U+FE0F are
# nonspacing marks), separators; and the replacement character.
_INVISIBLE = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Mn", "Mc", "Me", "Zs", "Zl", "Zp"})


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


def functional_key(token: str) -> str:
    r"""The form functional tokens are compared in: ``▁`` as a space, outer whitespace stripped,
    case-folded (``"\u2581The"`` → ``"the"``, ``"\n"`` → ``""``)."""
    return token.replace(SPIECE_SPACE, " ").strip().casefold()


def functional_set(words: Iterable[str]) -> frozenset[str]:
    """A user's functional-token list in the form :func:`is_functional` compares."""
    return frozenset(functional_key(w) for w in words)


def is_functional(token: str, functional: frozenset[str] = DEFAULT_FUNCTIONAL_TOKENS) -> bool:
    """Whether a token piece is functional: whitespace only (newline, tab, spaces), in the set
    (compared as :func:`functional_key`), or pure punctuation (``,``, ``...``, ``«``).

    The one rule of the peaks analysis and the signatures; give it the lossless piece.
    """
    norm = functional_key(token)
    if not norm or norm in functional:
        return True
    return all(unicodedata.category(c).startswith("P") for c in norm)


def is_unnameable(token: str) -> bool:
    r"""Whether a token piece can never name a neuron: a byte-fallback piece (``<0x9A>``), a
    special token (``<bos>``, ``<pad>``, ``<start_of_turn>``, ``<unused12>``), or nothing
    readable once whitespace, control, format, combining and variation-selector characters are
    removed (``"\ufe0f"``, ``"\u200d"``, ``"\n"``)."""
    if _SPECIAL.match(token.strip()):
        return True
    return not any(
        unicodedata.category(c) not in _INVISIBLE and c != "\ufffd"
        for c in token.replace(SPIECE_SPACE, " ")
    )
