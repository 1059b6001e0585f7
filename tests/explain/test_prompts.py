"""Explainer and simulator prompts: the rendered text of each template on a fixed record, pinned."""

from __future__ import annotations

import math

import pytest

from neuron_signatures.explain import prompts as P
from neuron_signatures.export.records import ActivationRecord

REC = ActivationRecord(
    tokens=["The", " capital", " of", " Texas", " is", " Austin"],
    activations=[0.0, 0.5, -2.0, 4.0, 0.1, 8.0],
)
SPARSE = ActivationRecord(tokens=["a", "b", "c", "d", "e", "f"], activations=[0, 0, 3.0, 0, 0, 0])


def test_scale_is_floor_of_ten_times_share_of_the_max_per_sign() -> None:
    assert P.scale_0_10([REC], "positive") == [[0, 0, 0, 5, 0, 10]]
    # negative side: negated values [0, -.5, 2, -4, -.1, -8], max 2
    assert P.scale_0_10([REC], "negative") == [[0, 0, 10, 0, 0, 0]]
    flat = ActivationRecord(tokens=["x", "y"], activations=[-1.0, math.nan])
    assert P.scale_0_10([flat], "positive") == [[0, 0]]


def test_openai_explainer_prompt_is_pinned() -> None:
    msgs = P.openai_explainer_messages([REC], "positive")
    assert [m["role"] for m in msgs] == ["system", "user"]
    assert msgs[0]["content"].startswith("We're studying neurons in a neural network.")
    assert msgs[0]["content"].endswith(
        "The higher the activation value, the stronger the match. "
        "The values shown are the neuron's positive activations."
    )
    assert msgs[1]["content"] == (
        "\n\nNeuron 1\nActivations:\n<start>\n"
        "The\t0\n capital\t0\n of\t0\n Texas\t5\n is\t0\n Austin\t10\n"
        "<end>\n"
        "\nExplanation of neuron 1 behavior: the main thing this neuron does is find"
    )


def test_openai_explainer_repeats_sparse_records_without_zeros_and_scales_over_all() -> None:
    msgs = P.openai_explainer_messages([SPARSE, REC], "positive")
    user = msgs[1]["content"]
    # max over both records is 8: SPARSE's 3.0 scales to floor(3.75) = 3; 3 of 12 values > 0
    assert "\nc\t3\n" in user
    assert "Same activations" not in user
    alone = P.openai_explainer_messages([SPARSE], "positive")[1]["content"]
    assert alone == (
        "\n\nNeuron 1\nActivations:\n<start>\na\t0\nb\t0\nc\t10\nd\t0\ne\t0\nf\t0\n<end>\n"
        "\nSame activations, but with all zeros filtered out:\n<start>\nc\t10\n<end>\n"
        "\nExplanation of neuron 1 behavior: the main thing this neuron does is find"
    )


def test_openai_explainer_few_shot_neurons_come_first_with_their_answers() -> None:
    msgs = P.openai_explainer_messages([REC], "positive", few_shot=[([SPARSE], "the letter c")])
    assert [m["role"] for m in msgs] == ["system", "user", "assistant", "user"]
    assert msgs[1]["content"].startswith("\n\nNeuron 1\nActivations:\n<start>\na\t0\n")
    assert msgs[1]["content"].endswith("Explanation of neuron 1 behavior: " + P.EXPLANATION_PREFIX)
    assert msgs[2]["content"] == " the letter c."
    assert msgs[3]["content"].startswith("\n\nNeuron 2\nActivations:\n<start>\nThe\t0\n")
    assert msgs[3]["content"].endswith("Explanation of neuron 2 behavior: " + P.EXPLANATION_PREFIX)


def test_openai_explainer_negative_side_is_said_and_negated() -> None:
    msgs = P.openai_explainer_messages([REC], "negative")
    assert "every activation was negated before scaling" in msgs[0]["content"]
    assert " of\t10\n" in msgs[1]["content"] and " Austin\t0\n" in msgs[1]["content"]


def test_delphi_explainer_prompt_is_pinned() -> None:
    rec = ActivationRecord(
        tokens=["and", " he", " was", " over", " the", " moon", " to", " find"],
        activations=[0, 0, 0.5, 5.0, 6.0, 9.0, 1.0, 0],
    )
    msgs = P.delphi_explainer_messages([rec, REC], "positive")
    assert msgs[0]["content"].startswith("You are a meticulous AI researcher")
    assert "The values shown are the neuron's positive activations." in msgs[0]["content"]
    assert msgs[0]["content"].endswith("using [EXPLANATION]:")
    # max 9 over both: [0,0,0,5,6,10,1,0] and [0,0,0,4,0,8]; cut at 3
    assert msgs[1]["content"] == (
        "Example 1: and he was<< over the moon>> to find\n"
        'Activations: (" over", 5), (" the", 6), (" moon", 10)\n'
        "\n"
        "Example 2: The capital of<< Texas>> is<< Austin>>\n"
        'Activations: (" Texas", 4), (" Austin", 8)\n'
    )


def test_delphi_negative_side_highlights_the_most_negative_tokens() -> None:
    msgs = P.delphi_explainer_messages([REC], "negative")
    assert msgs[1]["content"] == (
        'Example 1: The capital<< of>> Texas is Austin\nActivations: (" of", 10)\n'
    )
    assert "10 marks the most negative activation" in msgs[0]["content"]


def test_simulator_prompt_is_pinned() -> None:
    msgs = P.simulator_messages("the word Austin", REC.tokens[:3], "positive", neuron_number=2)
    assert msgs[0]["content"].startswith("We're studying neurons in a neural network.")
    assert msgs[0]["content"].endswith(
        "Answer with a JSON list of integers from 0 to 10, one per token, in order, "
        "and nothing else."
    )
    assert msgs[1]["content"] == (
        "\n\nNeuron 2\nExplanation of neuron 2 behavior: the main thing this neuron does is find "
        "the word Austin\nActivations:\n<start>\nThe\tunknown\n capital\tunknown\n of\tunknown\n"
        "<end>\n"
    )


def test_parsers_read_the_answers_and_refuse_garbage() -> None:
    assert P.parse_openai_explanation(" the word 'Austin'.\nmore") == "the word 'Austin'"
    assert P.parse_openai_explanation("The main thing this neuron does is find cities.") == "cities"
    assert (
        P.parse_delphi_explanation("thinking...\n[EXPLANATION]: Texan cities\n") == "Texan cities"
    )
    assert P.parse_delphi_explanation("no label here") is None
    assert P.parse_simulation("Sure: [0, 3, 12]", 3) == [0.0, 3.0, 10.0]
    assert P.parse_simulation('[["The", 0], [" cap", 4]]', 2) == [0.0, 4.0]
    assert P.parse_simulation("[0, 1]", 3) is None
    assert P.parse_simulation("[0, true, 1]", 3) is None
    assert P.parse_simulation("no list", 1) is None


def test_expected_activation_renormalises_over_digit_tokens() -> None:
    lp = {"0": math.log(0.5), " 10": math.log(0.25), "x": math.log(0.25)}
    assert P.expected_activation(lp) == pytest.approx(10 * 0.25 / 0.75)
    assert P.expected_activation({"no": 0.0}) == 0.0


def test_bad_sign_is_refused() -> None:
    for build in (
        lambda: P.openai_explainer_messages([REC], "both"),  # type: ignore[arg-type]
        lambda: P.delphi_explainer_messages([REC], "both"),  # type: ignore[arg-type]
        lambda: P.simulator_messages("x", REC.tokens, "both"),  # type: ignore[arg-type]
    ):
        with pytest.raises(ValueError, match="sign must be"):
            build()
