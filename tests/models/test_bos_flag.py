"""Booting a bridge reuses the tokenizer (no 2.5 s reload) when it already prepends BOS."""

from __future__ import annotations

from typing import Any

from transformer_lens.utilities.tokenize_utils import get_tokenizer_with_bos

from neuron_signatures.models.load import _mark_bos


class _Tok:
    """The few tokenizer attributes the bridge's BOS check reads."""

    bos_token = "<bos>"
    bos_token_id = 2

    def __init__(self, prepends: bool) -> None:
        self.prepends = prepends
        self.add_bos_token = False
        self.init_kwargs: dict[str, Any] = {"name_or_path": "/nowhere/to/reload/from"}

    def __call__(self, text: str) -> dict[str, list[int]]:
        return {"input_ids": ([2] if self.prepends else []) + [7]}


def test_a_tokenizer_that_prepends_bos_is_not_reloaded() -> None:
    tok = _Tok(prepends=True)
    _mark_bos(tok)
    assert tok.init_kwargs["add_bos_token"] is True
    assert get_tokenizer_with_bos(tok) is tok  # no from_pretrained of "/nowhere/..."
    assert tok("a")["input_ids"] == [2, 7]


def test_a_tokenizer_without_bos_is_left_alone() -> None:
    tok = _Tok(prepends=False)
    _mark_bos(tok)
    assert "add_bos_token" not in tok.init_kwargs
    assert tok.add_bos_token is False
