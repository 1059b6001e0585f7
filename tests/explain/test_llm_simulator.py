"""The all-at-once simulator through ``/completions`` (prompt logprobs at each ``unknown``)."""

from __future__ import annotations

import itertools
import math

import pytest

from neuron_signatures.explain import llm
from neuron_signatures.explain import prompts as P
from neuron_signatures.explain.client import CompletionResult, LLMServerError

TOKENS = [" The", " Austin", "\\t"]  # a tab in a token is escaped: one tab per line
HI, LO = math.log(0.75), math.log(0.25)


def echoed(prompt: str, split: str) -> CompletionResult:
    """``prompt`` cut so that each placeholder is ``unknown`` alone (``split="apart"``) or one
    token with its tab (``"joined"``); alternatives 7 (p=.75) / 1 at the n-th placeholder."""
    slots = P.placeholder_offsets(prompt)
    cuts = sorted({0, *slots, *(s - 1 for s in slots if split == "joined"), len(prompt)})
    if split == "joined":
        cuts = [c for c in cuts if c not in slots]
    toks = [prompt[a:b] for a, b in itertools.pairwise(cuts)]
    offs = cuts[:-1]
    tops: list[dict[str, float]] = []
    for t, o in zip(toks, offs, strict=True):
        n = next((k for k, s in enumerate(slots) if o <= s < o + len(t)), None)
        tops.append(
            {t: 0.0} if n is None else {("\t" if split == "joined" else "") + str(n): HI, "x": LO}
        )
    return CompletionResult(prompt, toks, [None] * len(toks), tops, False, offs)


def test_prompt_holds_one_placeholder_per_token_in_its_block() -> None:
    prompt = P.simulator_prompt('the token "Austin"', TOKENS, "positive")
    msgs = P.simulator_messages('the token "Austin"', TOKENS, "positive")
    assert prompt == msgs[0]["content"] + msgs[1]["content"]
    slots = P.placeholder_offsets(prompt)
    assert len(slots) == 3 and all(prompt[s : s + 7] == "unknown" for s in slots)
    assert all(prompt[s - 1] == "\t" for s in slots)
    assert '"unknown" indicates' in prompt[: slots[0]]  # the system text's mention is not a slot


@pytest.mark.parametrize("split", ["apart", "joined"])
def test_expected_value_is_read_at_each_placeholder(split: str) -> None:
    prompt = P.simulator_prompt("x", TOKENS, "negative")
    res = echoed(prompt, split)
    vals = llm.parse_echoed(res, 3)
    # slot n offers the digit n (p=.75, renormalised over digits: the only digit) → n
    assert vals == pytest.approx([0.0, 1.0, 2.0])
    no_offsets = CompletionResult(prompt, res.tokens, res.token_logprobs, res.top_logprobs)
    assert llm.parse_echoed(no_offsets, 3) == vals  # offsets from the tokens' lengths
    assert llm.parse_simulated(res, 3) == (vals, "prompt_logprobs")


def test_an_answer_that_does_not_align_is_an_error() -> None:
    prompt = P.simulator_prompt("x", TOKENS)
    res = echoed(prompt, "apart")
    with pytest.raises(LLMServerError, match="does not align"):
        llm.parse_echoed(res, 4)
    torn = CompletionResult(prompt[:-3], res.tokens, res.token_logprobs, res.top_logprobs)
    with pytest.raises(LLMServerError, match="does not align"):
        llm.parse_echoed(torn, 3)


def test_request_shapes() -> None:
    prompt, params = llm.simulator_request("x", TOKENS, "positive", "prompt_logprobs")
    assert isinstance(prompt, str) and params == {
        "echo": True,
        "logprobs": 5,
        "max_tokens": 1,
        "temperature": 0.0,
    }
    msgs, params = llm.simulator_request("x", TOKENS, "positive", "top_logprobs")
    assert isinstance(msgs, list) and params["top_logprobs"] == 5
    _, params = llm.simulator_request("x", TOKENS, "positive", "json")
    assert "logprobs" not in params
