"""Detection and fuzzing (delphi's classifier scorers): the windows, the samples, the answers and
the scores, on hand-built inputs with known answers."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.stats import mannwhitneyu
from sklearn.metrics import balanced_accuracy_score, roc_auc_score

from neuron_signatures.explain import classify as C
from neuron_signatures.explain import prompts as P
from neuron_signatures.explain.client import ChatResult, LLMServerError


def win(w: int, values: list[float]) -> C.Window:
    return C.Window(w, [f"t{w}_{j}" for j in range(len(values))], np.array(values, float))


def test_metrics_equal_sklearn_and_scipy() -> None:
    rng = np.random.default_rng(0)
    truth = rng.random(40) < 0.3
    pred = rng.random(40) < 0.5
    prob = np.round(rng.random(40), 1)  # ties on purpose
    assert C.balanced_accuracy(truth, pred) == pytest.approx(balanced_accuracy_score(truth, pred))
    assert C.auc(truth, prob) == pytest.approx(roc_auc_score(truth, prob))
    u = mannwhitneyu(prob[truth], prob[~truth]).statistic
    assert C.auc(truth, prob) == pytest.approx(u / (truth.sum() * (~truth).sum()))
    assert math.isnan(C.balanced_accuracy(np.ones(3, bool), np.ones(3, bool)))
    assert math.isnan(C.auc(np.zeros(3, bool), np.zeros(3)))


def test_windows_split_at_the_threshold_and_quiet_ones_match_in_number() -> None:
    active = [win(1, [0.0, 5.0]), win(2, [0.0, 2.9]), win(3, [10.0, 0.0])]  # 2.9 < 0.3 × 10
    cands = [win(10 + k, [0.0, 1.0 + k]) for k in range(5)]  # 3.0 and more: not quiet
    act, quiet = C.pick_windows(active, cands, 10.0, np.random.default_rng(0))
    assert [w.window for w in act] == [1, 3]
    assert len(quiet) == 2 and {w.window for w in quiet} <= {10, 11}
    assert C.pick_windows(active, cands, 0.0, np.random.default_rng(0)) == ([], [])


def test_detection_and_fuzzing_samples() -> None:
    act = [win(1, [0.0, 5.0, 4.0]), win(3, [10.0, 0.0, 0.0])]
    quiet = [win(7, [0.0, 0.0, 1.0]), win(8, [1.0, 0.0, 0.0])]
    det = C.samples("detection", act, quiet, 10.0, np.random.default_rng(1))
    assert sorted((s.window, s.truth) for s in det) == [
        (1, True),
        (3, True),
        (7, False),
        (8, False),
    ]
    assert not any(any(s.marked) for s in det)
    fuzz = C.samples("fuzzing", act, quiet, 10.0, np.random.default_rng(1))
    by = {s.window: s for s in fuzz}
    assert by[1].marked == [False, True, True] and by[3].marked == [True, False, False]
    # wrong highlights: as many tokens as the activating windows' mean (1.5 → 2), at random
    assert sum(by[7].marked) == sum(by[8].marked) == 2 and not by[7].truth
    again = C.samples("fuzzing", act, quiet, 10.0, np.random.default_rng(1))
    assert [(s.window, s.marked) for s in again] == [(s.window, s.marked) for s in fuzz]
    assert [len(b) for b in C.batches(det + det, 5)] == [5, 3]


def test_held_out_windows_must_be_unseen() -> None:
    C.check_unseen([1, 2], {3, 4})
    with pytest.raises(AssertionError, match="train windows"):
        C.check_unseen([1, 2], {2})


def test_answers_parse_with_and_without_logprobs() -> None:
    hi, lo = math.log(0.8), math.log(0.2)
    tops = [{"[": 0.0}, {"1": hi, "0": lo}, {", ": 0.0}, {"0": hi, "1": lo}, {"]": 0.0}]
    preds, probs = C.parse(ChatResult(["[1, 0]"], [tops]), 2)  # type: ignore[misc]
    assert preds == [1, 0] and probs == pytest.approx([0.8, 0.2])
    assert C.parse(ChatResult(["Sure: [1, 0]"]), 2) == ([1, 0], None)
    only_chosen = [{"[": 0.0}, {"1": 0.0}, {", ": 0.0}, {"0": 0.0}, {"]": 0.0}]
    assert C.parse(ChatResult(["[1, 0]"], [only_chosen]), 2) == ([1, 0], None)
    for garbage in ("[1, 0, 1]", "yes, no", "[1, 2]", "[0.5, 1]"):
        assert C.parse(ChatResult([garbage]), 2) is None
    with pytest.raises(LLMServerError):
        C.parse(LLMServerError("refused", status=400), 2)


def test_score_leaves_unparsable_batches_out_and_says_how_it_read() -> None:
    s = [C.Sample(w, ["a"], [False], w < 2) for w in range(4)]
    groups = [s[:2], s[2:]]
    got = C.score(groups, [([1, 1], [0.9, 0.6]), ([0, 1], [0.1, 0.7])])
    assert got == {"balanced_accuracy": 0.75, "auc": 0.75, "method": "logprobs", "n_invalid": 0}
    got = C.score(groups, [([1, 1], [0.9, 0.6]), ([0, 1], None)])
    assert got["method"] == "parsed" and got["auc"] is None and got["balanced_accuracy"] == 0.75
    got = C.score(groups, [([1, 1], None), None])
    assert got["n_invalid"] == 2 and got["balanced_accuracy"] is None  # one class left: undefined


def test_scorer_names() -> None:
    assert C.parse_scorers("fuzzing, simulation") == ("simulation", "fuzzing")
    for bad in ("", "simulation,nope"):
        with pytest.raises(ValueError, match="pick from simulation, detection, fuzzing"):
            C.parse_scorers(bad)


def test_classifier_prompts_are_pinned() -> None:
    ex = [(["The", " capital", " Austin"], [False, False, True]), (["a", "b"], [True, True])]
    det = P.classifier_messages("detection", 'the token "Austin"', ex, "positive")
    assert det[0]["content"].startswith("We're studying neurons in a neural network.")
    assert "whether the neuron fires on it" in det[0]["content"]
    assert det[0]["content"].endswith("(1: the neuron fires, 0: it does not), and nothing else.")
    assert det[1]["content"] == (
        'Explanation: the main thing this neuron does is find the token "Austin"\n\n'
        "Example 1: The capital Austin\nExample 2: ab"
    )
    fuzz = P.classifier_messages("fuzzing", "x", ex, "negative")
    assert fuzz[1]["content"].endswith("Example 1: The capital<< Austin>>\nExample 2: <<ab>>")
    assert "far below zero" in fuzz[0]["content"]
    with pytest.raises(ValueError, match="kind must be"):
        P.classifier_messages("intruder", "x", ex)
