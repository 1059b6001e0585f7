"""Explainer and simulator prompts as data, in the formats of the two anchors, for either sign.

Templates:

1. **OpenAI** (openai/automated-interpretability, ``explanations/explainer.py``'s
   token-activation-pair explainer): each record is ``<start>``, one ``token<TAB>activation`` line
   per token, ``<end>``; activations are scaled to integers 0-10 by the largest activation over all
   records (``floor(10 * max(a, 0) / max)``); when under 20% of the values are non-zero the
   records are repeated with the zeros left out; the user turn ends with the explanation prefix
   ``the main thing this neuron does is find`` for the model to complete.
2. **delphi** (EleutherAI/delphi, ``explainers/default``): each example is its text with the tokens
   at or above ``threshold * max`` wrapped in ``<<...>>`` (a run of such tokens in one pair), then
   ``Activations:`` with ``("token", value)`` for those tokens, values scaled 0-10 as above; the
   answer's last line is ``[EXPLANATION]: ...``.
3. **Simulator** (OpenAI's all-at-once simulator): the explanation, then the record with every
   activation ``unknown``; the model answers a JSON list of 0-10 integers, one per token (read with
   :func:`parse_simulation`), or, through ``/completions`` with ``echo`` and ``logprobs``, the
   expected value over the digits at each ``unknown`` gives a real-valued prediction
   (:func:`expected_activation`).

Both signs: the negative side of a neuron is rendered on the *negated* activations (so its most
negative value shows as 10) and the system text says so; the positive side is the anchors' own
wording plus one sentence naming the side.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from typing import Literal, Protocol

Sign = Literal["positive", "negative"]
Message = dict[str, str]

EXPLANATION_PREFIX = "the main thing this neuron does is find"
UNKNOWN = "unknown"
SIDE_TEXT: dict[str, str] = {
    "positive": "The values shown are the neuron's positive activations.",
    "negative": (
        "The values shown are the neuron's negative side: every activation was negated before "
        "scaling, so 10 marks the most negative activation and 0 marks zero or positive ones."
    ),
}

OPENAI_SYSTEM = (
    "We're studying neurons in a neural network. Each neuron looks for some particular thing in a "
    "short document. Look at the parts of the document the neuron activates for and summarize in "
    "a single sentence what the neuron is looking for. Don't list examples of words.\n\n"
    "The activation format is token<tab>activation. Activation values range from 0 to 10. A "
    "neuron finding what it's looking for is represented by a non-zero activation value. The "
    "higher the activation value, the stronger the match. {side}"
)

DELPHI_SYSTEM = (
    "You are a meticulous AI researcher conducting an important investigation into patterns found "
    "in language. Your task is to analyze text and provide an explanation that thoroughly "
    "encapsulates possible patterns found in it.\n"
    "Guidelines:\n\n"
    "You will be given a list of text examples on which special words are selected and between "
    "delimiters like <<this>>. If a sequence of consecutive tokens all are important, the entire "
    "sequence of tokens will be contained between delimiters <<just like this>>. How important "
    "each token is for the behavior is listed after each example in parentheses, from 0 to 10. "
    "{side}\n"
    "- Try to produce a concise final description. Simply describe the text features that are "
    "common in the examples, and what patterns you found.\n"
    "- If the examples are uninformative, you don't need to mention them. Don't focus on giving "
    "examples of important tokens, but try to summarize the patterns found in the examples.\n"
    "- Do not mention the marker tokens (<< >>) in your explanation.\n"
    "- The last line of your response must be the formatted explanation, using [EXPLANATION]:"
)

SIMULATOR_SYSTEM = (
    "We're studying neurons in a neural network. Each neuron looks for some particular thing in a "
    "short document. Look at the summary of what the neuron does, and try to predict how it will "
    "fire on each token.\n\n"
    "The activation format is token<tab>activation, activations go from 0 to 10, "
    '"unknown" indicates an unknown activation. Most activations will be 0. {side}\n'
    "Answer with a JSON list of integers from 0 to 10, one per token, in order, and nothing else."
)


class Record(Protocol):
    """A token sequence with the neuron's activation per token (``export.records.ActivationRecord``
    and OpenAI's ``ActivationRecord`` both fit)."""

    tokens: list[str]
    activations: list[float]


def side_text(sign: Sign) -> str:
    """The sentence that tells the model which side of the neuron it is shown."""
    if sign not in SIDE_TEXT:
        raise ValueError(f"sign must be 'positive' or 'negative', got {sign!r}")
    return SIDE_TEXT[sign]


def signed(values: Sequence[float], sign: Sign) -> list[float]:
    """The activations as the given side sees them: as they are, or negated for ``negative``."""
    side_text(sign)
    return [float(v) if sign == "positive" else -float(v) for v in values]


def scale_0_10(records: Sequence[Record], sign: Sign) -> list[list[int]]:
    """Integers 0-10 per token: ``floor(10 * max(a, 0) / m)``, ``m`` the largest signed value.

    Non-finite values and a non-positive ``m`` give 0.
    """
    vals = [signed(r.activations, sign) for r in records]
    m = max((v for row in vals for v in row if math.isfinite(v)), default=0.0)
    if m <= 0:
        return [[0] * len(row) for row in vals]
    return [
        [min(10, math.floor(10 * max(v, 0.0) / m)) if math.isfinite(v) else 0 for v in row]
        for row in vals
    ]


def _token_lines(tokens: Sequence[str], values: Sequence[int | str], omit_zeros: bool) -> str:
    lines = [
        f"{t}\t{v}" for t, v in zip(tokens, values, strict=True) if not (omit_zeros and v == 0)
    ]
    return "\n<start>\n" + "".join(f"{line}\n" for line in lines) + "<end>\n"


def _openai_neuron_turn(records: Sequence[Record], sign: Sign, number: int) -> str:
    scaled = scale_0_10(records, sign)
    toks = [r.tokens for r in records]
    body = "".join(_token_lines(t, s, False) for t, s in zip(toks, scaled, strict=True))
    n_all = sum(len(s) for s in scaled)
    n_nonzero = sum(v > 0 for s in scaled for v in s)
    user = f"\n\nNeuron {number}\nActivations:{body}"
    if n_all and n_nonzero / n_all < 0.2:
        zeros_out = "".join(_token_lines(t, s, True) for t, s in zip(toks, scaled, strict=True))
        user += f"\nSame activations, but with all zeros filtered out:{zeros_out}"
    return user + f"\nExplanation of neuron {number} behavior: {EXPLANATION_PREFIX}"


def openai_explainer_messages(
    records: Sequence[Record],
    sign: Sign = "positive",
    few_shot: Sequence[tuple[Sequence[Record], str]] = (),
) -> list[Message]:
    """OpenAI's explainer prompt for one neuron's records (see the module docstring, item 1).

    Args:
        records: the neuron's train records, scaled together.
        sign: the side explained; ``negative`` renders the negated activations.
        few_shot: ``(records, explanation)`` of solved neurons shown first as neurons 1..k (each
            scaled on its own, answered ``" {explanation}."``); the asked neuron is number k+1.
    """
    msgs = [{"role": "system", "content": OPENAI_SYSTEM.format(side=side_text(sign))}]
    for i, (recs, explanation) in enumerate(few_shot, start=1):
        msgs.append({"role": "user", "content": _openai_neuron_turn(recs, sign, i)})
        msgs.append({"role": "assistant", "content": f" {explanation}."})
    msgs.append({"role": "user", "content": _openai_neuron_turn(records, sign, len(few_shot) + 1)})
    return msgs


def _highlight(tokens: Sequence[str], marked: Sequence[bool]) -> str:
    out: list[str] = []
    for i, (tok, on) in enumerate(zip(tokens, marked, strict=True)):
        before = marked[i - 1] if i else False
        after = marked[i + 1] if i + 1 < len(marked) else False
        out.append(("<<" if on and not before else "") + tok + (">>" if on and not after else ""))
    return "".join(out)


def delphi_explainer_messages(
    records: Sequence[Record], sign: Sign = "positive", threshold: float = 0.3
) -> list[Message]:
    """delphi's explainer prompt: ``<<highlighted>>`` examples with activation lists (item 2)."""
    scaled = scale_0_10(records, sign)
    cut = 10 * threshold
    parts: list[str] = []
    for i, (rec, vals) in enumerate(zip(records, scaled, strict=True), start=1):
        marked = [v > 0 and v >= cut for v in vals]
        pairs = ", ".join(
            f"({json.dumps(t, ensure_ascii=False)}, {v})"
            for t, v, m in zip(rec.tokens, vals, marked, strict=True)
            if m
        )
        parts.append(f"Example {i}: {_highlight(rec.tokens, marked)}\nActivations: {pairs}\n")
    return [
        {"role": "system", "content": DELPHI_SYSTEM.format(side=side_text(sign))},
        {"role": "user", "content": "\n".join(parts)},
    ]


def simulator_messages(
    explanation: str, tokens: Sequence[str], sign: Sign = "positive", neuron_number: int = 1
) -> list[Message]:
    """The simulator's chat prompt: explanation, then the tokens with ``unknown`` (item 3)."""
    lines = _token_lines(tokens, [UNKNOWN] * len(tokens), False)
    user = (
        f"\n\nNeuron {neuron_number}\n"
        f"Explanation of neuron {neuron_number} behavior: {EXPLANATION_PREFIX} {explanation}\n"
        f"Activations:{lines}"
    )
    return [
        {"role": "system", "content": SIMULATOR_SYSTEM.format(side=side_text(sign))},
        {"role": "user", "content": user},
    ]


def parse_openai_explanation(text: str) -> str:
    """The completion of OpenAI's explanation prefix: first line, stripped, no final period."""
    lines = text.strip().splitlines()
    line = lines[0].strip() if lines else ""
    if line.lower().startswith(EXPLANATION_PREFIX):
        line = line[len(EXPLANATION_PREFIX) :].strip()
    return line[:-1].rstrip() if line.endswith(".") else line


def parse_delphi_explanation(text: str) -> str | None:
    """The text after the last ``[EXPLANATION]:``, or None when the answer has none."""
    found = re.findall(r"\[EXPLANATION\]:\s*(.+)", text)
    return found[-1].strip() if found else None


def parse_simulation(text: str, n_tokens: int) -> list[float] | None:
    """The simulator's JSON answer as ``n_tokens`` values clipped to 0-10, None when unusable.

    Accepts a bare list of numbers, or a list of ``[token, value]`` pairs (delphi's JSON
    simulator), anywhere in the answer.
    """
    m = re.search(r"\[.*\]", text, flags=re.S)
    if m is None:
        return None
    try:
        data = json.loads(m.group(0))
    except ValueError:
        return None
    if not isinstance(data, list) or len(data) != n_tokens:
        return None
    out: list[float] = []
    for item in data:
        v = item[-1] if isinstance(item, list) and item else item
        if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
            return None
        out.append(min(10.0, max(0.0, float(v))))
    return out


def expected_activation(top_logprobs: dict[str, float]) -> float:
    """Expected 0-10 value from one position's ``{token: logprob}``, renormalised over digits.

    Tokens that are not an integer 0-10 (after stripping spaces) are ignored; none gives 0.
    """
    num = total = 0.0
    for tok, lp in top_logprobs.items():
        s = tok.strip()
        k = _DIGITS.get(s)
        if k is None and s.isdigit() and int(s) <= 10:
            k = int(s)  # "07"
        if k is not None:
            p = math.exp(lp)
            num += k * p
            total += p
    return num / total if total > 0 else 0.0


_DIGITS = {str(k): k for k in range(11)}


# --- detection and fuzzing (delphi's classifier scorers) -----------------------------------------

CLASSIFY_SIDE: dict[str, str] = {
    "positive": "The explanation says what makes the neuron's activation high (positive).",
    "negative": (
        "The explanation says what makes the neuron's activation strongly negative: here the "
        "neuron 'fires' where its activation goes far below zero."
    ),
}

DETECTION_SYSTEM = (
    "We're studying neurons in a neural network. You are given an explanation of what one "
    "neuron looks for, then numbered text examples. For each example, decide whether the neuron "
    "fires on it, i.e. whether some part of the example matches the explanation. {side}\n"
    "Answer with a JSON list of 0s and 1s, one per example, in order (1: the neuron fires, "
    "0: it does not), and nothing else."
)

FUZZING_SYSTEM = (
    "We're studying neurons in a neural network. You are given an explanation of what one "
    "neuron looks for, then numbered text examples in which some tokens are highlighted between "
    "<< and >>. For each example, decide whether the highlighted tokens are the ones the "
    "explanation describes (the tokens the neuron fires on). {side}\n"
    "Answer with a JSON list of 0s and 1s, one per example, in order (1: the highlights match the "
    "explanation, 0: they do not), and nothing else."
)

CLASSIFY_SYSTEMS = {"detection": DETECTION_SYSTEM, "fuzzing": FUZZING_SYSTEM}


def classifier_messages(
    kind: str,
    explanation: str,
    examples: Sequence[tuple[Sequence[str], Sequence[bool]]],
    sign: Sign = "positive",
) -> list[Message]:
    """The detection (``kind="detection"``) or fuzzing prompt over numbered examples.

    Args:
        kind: ``detection`` (plain text) or ``fuzzing`` (the marked tokens in ``<<...>>``).
        explanation: the explanation scored (completes :data:`EXPLANATION_PREFIX`).
        examples: per example its tokens and which of them are highlighted (ignored for
            detection).
        sign: the side the explanation covers.
    """
    if kind not in CLASSIFY_SYSTEMS:
        raise ValueError(f"kind must be one of {sorted(CLASSIFY_SYSTEMS)}, got {kind!r}")
    side_text(sign)
    lines = [
        f"Example {k}: " + (_highlight(toks, marked) if kind == "fuzzing" else "".join(toks))
        for k, (toks, marked) in enumerate(examples, start=1)
    ]
    user = f"Explanation: {EXPLANATION_PREFIX} {explanation}\n\n" + "\n".join(lines)
    return [
        {"role": "system", "content": CLASSIFY_SYSTEMS[kind].format(side=CLASSIFY_SIDE[sign])},
        {"role": "user", "content": user},
    ]


def parse_binary(text: str, n: int) -> list[int] | None:
    """The first JSON list in ``text`` as ``n`` answers 0/1 (``true``/``false`` too), else None."""
    for m in re.finditer(r"\[[^\[\]]*\]", text):
        try:
            data = json.loads(m.group(0))
        except ValueError:
            continue
        if not isinstance(data, list) or len(data) != n:
            return None
        if not all(v in (0, 1) and not isinstance(v, float) for v in data):
            return None
        return [int(v) for v in data]
    return None


def prob_one(top_logprobs: dict[str, float]) -> float | None:
    """``P(1) / (P(0) + P(1))`` from one answer position's ``{token: logprob}`` (tokens stripped of
    spaces, commas and brackets); None when neither digit is among them."""
    p = {"0": 0.0, "1": 0.0}
    for tok, lp in top_logprobs.items():
        s = tok.strip().strip(",[]").strip()
        if s in p:
            p[s] += math.exp(lp)
    total = p["0"] + p["1"]
    return p["1"] / total if total > 0 else None


# --- the all-at-once simulator through /completions (prompt logprobs) ---------------------------


def simulator_prompt(explanation: str, tokens: Sequence[str], sign: Sign = "positive") -> str:
    """The simulator's chat prompt as one plain text, for ``/completions`` with ``echo``: every
    token's activation is the placeholder :data:`UNKNOWN`, whose prompt logprobs are the
    prediction (OpenAI's all-at-once simulator)."""
    system, user = (m["content"] for m in simulator_messages(explanation, tokens, sign))
    return f"{system}{user}"


def placeholder_offsets(prompt: str) -> list[int]:
    """Character offsets of the :data:`UNKNOWN` placeholders of the last ``<start>..<end>``
    block of ``prompt`` (one per token line, in order)."""
    lo = prompt.rfind("\n<start>\n")
    if lo < 0:
        return []
    pos = lo + len("\n<start>\n")
    end = prompt.find("<end>", pos)
    out = []
    for line in prompt[pos:end].split("\n")[:-1]:
        tab = line.rfind("\t")
        out.append(pos + tab + 1)
        pos += len(line) + 1
    return out
