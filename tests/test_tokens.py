"""The shared token rules: functional tokens (peaks and signatures agree) and unnameable tokens."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from neuron_signatures.analysis.peaks import aggregate_peaks, compute_prompt_peaks
from neuron_signatures.signatures.compute import compute_signatures
from neuron_signatures.signatures.config import parse_neuron_ids
from neuron_signatures.store.build import write_run
from neuron_signatures.tokens import (
    functional_set,
    is_functional,
    is_unnameable,
    token_ascii,
    token_display,
)

# whitespace and punctuation pieces, in the tokenizer's lossless form
FUNCTIONAL = ["\n", "\n\n", "\t", "\r\n", "\u2581", "\u2581\n", ",", "\u2581.", "...", "\u00ab",
              "\u2581The", "\u2581is", "'s"]  # fmt: skip
SEMANTIC = ["\u2581Austin", "Texas", "\u2581capital", "\u2581<div>", "\ufe0f", "<0x9A>", "2"]


@pytest.mark.parametrize("piece", FUNCTIONAL)
def test_whitespace_and_punctuation_are_functional(piece: str) -> None:
    assert is_functional(piece)


@pytest.mark.parametrize("piece", SEMANTIC)
def test_content_tokens_are_not_functional(piece: str) -> None:
    assert not is_functional(piece)


def test_newline_forms_agree() -> None:
    # the one rule sees the lossless piece; the prototype's ASCII form (runs that stored only
    # tokens_ascii) and the old visible form used to disagree
    assert token_ascii("\n") == "<n>" and is_functional("<n>") and is_functional("\n")
    assert token_display("\n") == "\\n" and is_functional("\n")


def test_user_functional_list_is_normalised_like_pieces() -> None:
    words = functional_set(["The", " Of "])
    assert is_functional("\u2581the", words) and is_functional("\u2581OF", words)
    assert not is_functional("\u2581is", words)  # replaced set...
    assert is_functional("\n", words) and is_functional(";", words)  # ...rules still hold


@pytest.mark.parametrize(
    "piece",
    ["\ufe0f", "\u2581\ufe0f", "\u200d", "\u0301", "\u00ad", "\n", "\u2581", "", "\ufffd",
     "<0x9A>", "<0x0a>", "<bos>", "<pad>", "<eos>", "<unk>", "<start_of_turn>", "<unused12>",
     "</s>", "<image_soft_token>"],
)  # fmt: skip
def test_unnameable_tokens(piece: str) -> None:
    assert is_unnameable(piece)


@pytest.mark.parametrize(
    "piece", ["\u2581Austin", "e\u0301", "\u2581\u2764\ufe0f", "<div>", "0x9A", ",", "\u6771"]
)
def test_readable_tokens_are_nameable(piece: str) -> None:
    assert not is_unnameable(piece)


@pytest.mark.parametrize("piece", ["\n", "\t", "\u2581", ";", "\u2014", "..."])
def test_peaks_and_signatures_agree_on_a_functional_peak(tmp_path: Path, piece: str) -> None:
    """A neuron peaking on ``piece`` in every prompt: both analyses call the peak functional."""
    words = ["<bos>", "\u2581Austin", piece, "\u2581Texas", "\u2581is"]
    prompts, acts = [], []
    for i in range(3):
        prompts.append({"probe_id": f"p{i}", "text": f"t{i}", "token_ids": [2, 10, 11, 12, 13],
                        "tokens": words})  # fmt: skip
        a = np.zeros((1, len(words), 2), np.float32)
        a[0, 2, 0] = 3.0  # neuron 0 peaks on the piece
        a[0, 1:, 1] = [0.1, 0.2, 4.0, 0.3]  # neuron 1 on Texas
        acts.append(a)
    run = write_run(tmp_path / "run", prompts=prompts, acts=acts, save_dtype="fp32")
    table = aggregate_peaks(run, compute_prompt_peaks(run))
    assert table["frac_peak_functional"].tolist() == [1.0, 0.0]
    res = compute_signatures(run, "p0", parse_neuron_ids("0:0,0:1"))
    assert res.metrics.peak_functional.tolist() == [[True, False], [True, False]]
    assert res.aggregates.func_vs_sem.tolist() == [1.0, 0.0]
    assert res.classification.names[1] == "Texas"
