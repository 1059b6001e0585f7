"""Target positions, scored positions, prompt resolution and one-token arguments."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from neuron_signatures.analysis.selection import make_selection
from neuron_signatures.attribution.targets import (
    parse_ctx,
    resolve_prompts,
    target_position,
    token_id_arg,
)
from neuron_signatures.errors import BadArgumentError
from neuron_signatures.store.build import write_run


def test_target_position_and_ctx() -> None:
    assert target_position("top1_logit", -1, 5) == 4
    assert target_position("next_token", 2, 5) == 2
    assert target_position("last_token", -1, 5) == 3  # the row before the last token
    with pytest.raises(BadArgumentError, match="2 tokens"):
        target_position("last_token", -1, 1)
    with pytest.raises(BadArgumentError, match="outside"):
        target_position("top1_logit", 5, 5)
    assert parse_ctx(None, 3, 5) == 3
    assert parse_ctx("all", 3, 5) is None
    assert parse_ctx("-3", 3, 5) == 2
    with pytest.raises(BadArgumentError, match="after the target"):
        parse_ctx(4, 3, 5)
    with pytest.raises(BadArgumentError, match="integer"):
        parse_ctx("x", 3, 5)


def test_resolve_prompts(tmp_path: Path) -> None:
    prompts = [
        {"probe_id": pid, "text": pid, "token_ids": [2, 5], "tokens": ["<bos>", "x"]}
        for pid in ("a", "1", "c")
    ]
    acts = [np.zeros((1, 2, 3), np.float32)] * 3
    run = write_run(tmp_path / "run", prompts, acts)
    assert [p.probe_id for p in resolve_prompts(run, "all")] == ["a", "1", "c"]
    assert resolve_prompts(run, "1")[0].probe_id == "1"  # the id wins over the index
    assert resolve_prompts(run, "-1")[0].probe_id == "c"
    with pytest.raises(BadArgumentError):
        resolve_prompts(run, "7")


def test_token_id_arg(tiny_tokenizer: Any) -> None:
    assert token_id_arg(tiny_tokenizer, None, None, "--target_token") is None
    assert token_id_arg(tiny_tokenizer, None, 7, "--target_token") == 7
    one = token_id_arg(tiny_tokenizer, "Austin", None, "--target_token")
    assert tiny_tokenizer.convert_ids_to_tokens([one]) == ["Austin"]
    with pytest.raises(BadArgumentError, match="out of range"):
        token_id_arg(tiny_tokenizer, None, 10**6, "--target_token")
    assert make_selection(None, 0.0).threshold == 0.0
