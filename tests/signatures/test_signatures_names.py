"""Names nobody can read never name a neuron: variation selectors, byte-fallback pieces."""

from __future__ import annotations

import numpy as np
import pytest

from neuron_signatures.signatures.compute import compute_signatures
from neuron_signatures.signatures.config import parse_neuron_ids
from neuron_signatures.signatures.result import SignatureResult
from neuron_signatures.store.build import write_run

VS16, BYTE = "\ufe0f", "<0x9A>"  # U+FE0F variation selector; a byte-fallback piece
PROMPTS = {
    "seed_prompt": ["<bos>", "The", "\u2581capital", "\u2581of", "\u2581Texas", "\u2581is"],
    "p1": ["<bos>", "The", "\u2581capital", "\u2581of", "\u2581Texas", "\u2581is", VS16,
           "\u2581Austin"],
    "p2": ["<bos>", "\u2581Austin", BYTE, "\u2581is", VS16, "\u2581in", "\u2581Texas"],
    "p3": ["<bos>", "\u2581Texas", BYTE, "\u2581has", "\u2581Austin", "\u2581is", VS16,
           "\u2581Austin"],
}  # fmt: skip
# 26 layers (early <= 3, late >= 7); neuron index = position in this list
VS_RELATED, BYTE_RELATED, BYTE_DETECTOR, SAY_AFTER_VS = (10, 0), (11, 1), (1, 2), (20, 3)


def acts(tokens: list[str]) -> np.ndarray:
    w = np.array([t.lstrip("\u2581") for t in tokens], object)
    a = np.zeros((26, len(tokens), 4), np.float32)
    # diffuse neurons whose highest mean activation is on an unreadable token, then on Texas
    a[VS_RELATED[0], 1:, 0] = np.select([w[1:] == VS16, w[1:] == "Texas"], [1.6, 1.4], 1.0)
    a[BYTE_RELATED[0], 1:, 1] = np.select([w[1:] == BYTE, w[1:] == "Texas"], [1.6, 1.4], 1.0)
    a[BYTE_DETECTOR[0], 1:, 2] = np.where(w[1:] == BYTE, 5.0, 0.0)  # a clean <0x9A> detector
    a[SAY_AFTER_VS[0], 1:, 3] = np.where(w[1:] == "is", 4.0, 0.0)  # "is", then VS16, then a word
    return a


@pytest.fixture(scope="module")
def result(tmp_path_factory: pytest.TempPathFactory) -> SignatureResult:
    recs = [{"probe_id": pid, "text": pid, "token_ids": list(range(len(t))), "tokens": t}
            for pid, t in PROMPTS.items()]  # fmt: skip
    run = write_run(tmp_path_factory.mktemp("names") / "run", prompts=recs,
                    acts=[acts(t) for t in PROMPTS.values()], save_dtype="fp32")  # fmt: skip
    ids = ",".join(f"{la}:{n}" for la, n in (VS_RELATED, BYTE_RELATED, BYTE_DETECTOR, SAY_AFTER_VS))
    return compute_signatures(run, "seed_prompt", parse_neuron_ids(ids))


def test_relationship_name_falls_back_past_a_variation_selector(result: SignatureResult) -> None:
    cls = result.classification
    assert cls.classes[0] == "relationship"
    assert cls.names[0] == "(Texas) related"  # was "(\ufe0f) related"


def test_relationship_name_falls_back_past_a_byte_token(result: SignatureResult) -> None:
    cls = result.classification
    assert cls.classes[1] == "relationship"
    assert cls.names[1] == "(Texas) related"  # was "(<0x9A>) related"


def test_detector_of_an_unreadable_token_is_unclassified(result: SignatureResult) -> None:
    cls = result.classification
    assert cls.classes[2] == "unclassified" and cls.names[2] is None
    assert (
        "semantic: semantic peak token '<0x9A>' is unnameable (byte, special or invisible token)"
        in cls.reasons[2]
    )


def test_say_target_skips_unreadable_tokens(result: SignatureResult) -> None:
    targets = [result.tables.display[t] for t in result.metrics.say_target_key[:, 3]]
    assert targets == ["Austin", "Texas", "Austin"]  # "is" → VS16 (skipped) → the next word
    assert result.classification.names[3] == "Say (Austin)"
    assert result.tables.unnameable[[result.tables.keys.index(k) for k in (VS16, "<0x9a>")]].all()
    assert all(VS16 not in n and "<0x" not in n for n in result.classification.names if n)
