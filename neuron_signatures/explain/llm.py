"""The LLM explainer and simulator of one neuron side, through an OpenAI-compatible server.

The method (OpenAI's automated-interpretability explainer → simulator, Transluce's best-of-k):

1. **Records**: a side's train windows (the atlas's top examples of even rank for the positive
   side, bottom ones for the negative side) with their stored activations, as ``token`` /
   ``activation`` lists (:func:`window_record`); SentencePiece's ``▁`` shown as a space.
2. **Explain**: the explainer prompt (:mod:`.prompts`, OpenAI's or delphi's format) over those
   records; ``k`` samples (temperature 1, ``seed`` j) when ``best_of > 1``, else one at
   temperature 0. An answer without an explanation is an error of that neuron.
3. **Simulate**: the simulator prompt over one window's tokens; the prediction per token is the
   expected value over the digits 0-10 (:func:`.prompts.expected_activation`), read, best
   first: from the **prompt's** logprobs at each ``unknown`` placeholder through
   ``/completions`` with ``echo`` (OpenAI's all-at-once simulator, ``"prompt_logprobs"``:
   one forward, nothing generated), from the ``top_logprobs`` of each number of the chat
   answer (``"top_logprobs"``), else from the parsed JSON list
   (:func:`.prompts.parse_simulation`, ``"json"``). The method used is returned with the
   values.
4. **Best of k**: each candidate is simulated on a validation slice of the TRAIN split (the odd
   half of the train windows, which the explainer is then not shown) and the one with the best
   Pearson's r is kept (ties: the first); held-out data is never used to choose.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .client import ChatResult, CompletionResult, LLMServerError, token_offsets
from .lookup import SPIECE_SPACE
from .prompts import (
    Message,
    Sign,
    delphi_explainer_messages,
    expected_activation,
    openai_explainer_messages,
    parse_delphi_explanation,
    parse_openai_explanation,
    parse_simulation,
    placeholder_offsets,
    simulator_messages,
    simulator_prompt,
)
from .split import LayerArrays, Windows

FORMATS = ("openai", "delphi")
SIM_METHODS = ("prompt_logprobs", "top_logprobs", "json")
# a chat request (messages) or a /completions one (a prompt string), with its parameters
Request = tuple[list[Message] | str, dict[str, Any]]


@dataclass
class WindowRecord:
    """One window's counted tokens (strings) and the neuron's activation on each."""

    window: int
    tokens: list[str]
    activations: list[float]


def token_text(vocab: Sequence[str], i: int) -> str:
    """A token as the prompts show it: ``▁`` as a space, tab and newline escaped (the record
    format is one ``token<TAB>value`` per line)."""
    s = vocab[i] if 0 <= i < len(vocab) else f"<{i}>"
    return s.replace(SPIECE_SPACE, " ").replace("\t", "\\t").replace("\n", "\\n")


def window_tokens(win: Windows, w: int, vocab: Sequence[str]) -> list[str]:
    """The counted tokens of window ``w`` (positions ``start .. length``)."""
    ids = win.tokens[w, win.start : int(win.lengths[w])]
    return [token_text(vocab, int(t)) for t in ids]


def window_record(win: Windows, w: int, acts: np.ndarray, vocab: Sequence[str]) -> WindowRecord:
    """Window ``w`` with ``acts [ctx_len]`` (the atlas's stored example row)."""
    end = int(win.lengths[w])
    vals = [float(v) for v in acts[win.start : end]]
    return WindowRecord(int(w), window_tokens(win, w, vocab), vals)


def train_records(
    arr: LayerArrays, win: Windows, i: int, side: str, vocab: Sequence[str], limit: int
) -> list[WindowRecord]:
    """Neuron ``i``'s train windows of ``side`` (module doc, step 1), ranked, one per window."""
    g, acts = (arr.top_g, arr.top_acts) if side == "positive" else (arr.bot_g, arr.bot_acts)
    out: list[WindowRecord] = []
    seen: set[int] = set()
    for j in range(0, g.shape[1], 2):
        if g[i, j] < 0:
            continue
        w = int(g[i, j]) // win.ctx_len
        if w in seen:
            continue
        seen.add(w)
        out.append(window_record(win, w, acts[i, j], vocab))
        if len(out) >= limit:
            break
    return out


def split_validation(
    records: list[WindowRecord], best_of: int
) -> tuple[list[WindowRecord], list[WindowRecord]]:
    """``(shown to the explainer, validation slice)``: all and none for ``best_of == 1``, else
    even and odd ranks (both halves of the train split) when there are two or more records."""
    if best_of == 1:
        return records, []
    if len(records) < 2:
        return records, records
    return records[0::2], records[1::2]


def explainer_request(
    records: Sequence[WindowRecord], sign: Sign, fmt: str, best_of: int, j: int
) -> Request:
    """The chat request of candidate ``j`` (module doc, step 2)."""
    if fmt == "openai":
        msgs = openai_explainer_messages(records, sign)
    else:
        msgs = delphi_explainer_messages(records, sign)
    # OpenAI's format asks for the one-line rest of a sentence (their explainer allows 60
    # tokens); delphi's answer reasons before its [EXPLANATION] line.
    params: dict[str, Any] = {"max_tokens": 60 if fmt == "openai" else 200, "temperature": 0.0}
    if best_of > 1:
        params.update(temperature=1.0, seed=j)
    return msgs, params


def parse_explanation(res: ChatResult | LLMServerError, fmt: str) -> str:
    """The explanation in an explainer's answer; raises :class:`LLMServerError` when none."""
    if isinstance(res, LLMServerError):
        raise res
    text = res.texts[0] if res.texts else ""
    found = parse_openai_explanation(text) if fmt == "openai" else parse_delphi_explanation(text)
    if not found:
        raise LLMServerError(f"the explainer's answer holds no explanation ({text[:80]!r})")
    return found


def simulator_request(
    explanation: str, tokens: Sequence[str], sign: Sign, method: str | bool
) -> Request:
    """The simulator's request for one window (module doc, step 3): ``method`` is one of
    :data:`SIM_METHODS` (``True``/``False``: ``top_logprobs``/``json``, the older spelling)."""
    if method is True or method is False:
        method = "top_logprobs" if method else "json"
    if method == "prompt_logprobs":
        prompt = simulator_prompt(explanation, tokens, sign)
        # max_tokens 1, not OpenAI's 0: llama-cpp-python reads 0 as "no limit" (to its context)
        return prompt, {"echo": True, "logprobs": 5, "max_tokens": 1, "temperature": 0.0}
    params: dict[str, Any] = {"max_tokens": 6 * len(tokens) + 16, "temperature": 0.0}
    if method == "top_logprobs":
        params.update(logprobs=True, top_logprobs=5)
    return simulator_messages(explanation, tokens, sign), params


def _number(tok: str) -> bool:
    s = tok.strip().strip(",[]").strip()
    return s.isdigit() and int(s) <= 10


def parse_echoed(res: CompletionResult, n_tokens: int) -> list[float]:
    """Expected values at the prompt's placeholders of an echoed ``/completions`` answer: the
    alternatives of the token that covers each placeholder's first character (its logprobs are
    the model's prediction for that slot, given every token before it)."""
    slots = placeholder_offsets(res.text)
    offs = token_offsets(res)
    if len(slots) != n_tokens or offs is None or len(res.top_logprobs) != len(offs):
        raise LLMServerError(
            f"the echoed simulator prompt does not align ({len(slots)} placeholders for "
            f"{n_tokens} tokens, {len(res.tokens)} echoed tokens)"
        )
    at = np.searchsorted(np.asarray(offs), np.asarray(slots), side="right") - 1
    return [expected_activation(res.top_logprobs[int(j)]) if j >= 0 else 0.0 for j in at]


def parse_simulated(
    res: ChatResult | CompletionResult | LLMServerError, n_tokens: int
) -> tuple[list[float], str]:
    """``(values 0-10 per token, method)``: ``"prompt_logprobs"`` for an echoed completion,
    ``"top_logprobs"`` when every number of a chat answer has alternatives, else ``"json"``;
    raises :class:`LLMServerError` on an unusable answer."""
    if isinstance(res, LLMServerError):
        raise res
    if isinstance(res, CompletionResult):
        return parse_echoed(res, n_tokens), "prompt_logprobs"
    if res.top_logprobs:
        steps = res.top_logprobs[0]
        picks = [max(t, key=t.__getitem__) for t in steps if t]
        nums = [
            {k.strip().strip(",[]").strip(): v for k, v in t.items()}
            for t, p in zip([t for t in steps if t], picks, strict=True)
            if _number(p)
        ]
        if len(nums) == n_tokens and all(len(t) > 1 for t in nums):
            return [expected_activation(t) for t in nums], "top_logprobs"
    text = res.texts[0] if res.texts else ""
    vals = parse_simulation(text, n_tokens)
    if vals is None:
        raise LLMServerError(
            f"the simulator's answer is not a list of {n_tokens} numbers 0-10 ({text[:80]!r})"
        )
    return vals, "json"


def validation_score(
    records: Sequence[WindowRecord], sims: Sequence[list[float]], sign: float
) -> float:
    """Pearson's r of the signed activations and the simulation over the validation windows
    (NaN: undefined, ranked last)."""
    from .scoring import correlation_score

    x = [sign * v for r in records for v in r.activations]
    y = [v for s in sims for v in s]
    if not x:
        return math.nan
    return correlation_score(np.array(x), np.array(y))


def best(scores: Sequence[float]) -> int:
    """Index of the highest score, NaN last, the first on ties."""
    key = [s if not math.isnan(s) else -math.inf for s in scores]
    return int(np.argmax(key))
