"""The offline explainer on a planted token detector, and a random neuron against its floor."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from neuron_signatures.explain import read_explanations
from tests.explain.conftest import PLANTED_LAYER, PLANTED_NEURON, PLANTED_WORD


def records(atlas: Path) -> dict[tuple[int, int], dict]:
    _, recs = read_explanations(atlas)
    return {(r["layer"], r["neuron"]): r for r in recs}


def test_planted_detector_is_named_and_scores_high(explained: Path) -> None:
    rec = records(explained)[(PLANTED_LAYER, PLANTED_NEURON)]
    assert rec["min"] == 0.0 and rec["max"] > 5  # fires on one token, never negative
    (side,) = rec["sides"]  # nothing to explain on the negative side
    assert side["side"] == "positive"
    assert [t["token"] for t in side["tokens"]] == [PLANTED_WORD]
    assert side["explanation"].startswith(f'fires on "{PLANTED_WORD}" (')
    assert side["scores"]["top_and_random"] >= 0.9
    assert side["scores"]["random_only"] >= 0.9
    assert abs(side["floor"]["top_and_random"]) < 0.5
    assert side["floor"]["from_neuron"] != PLANTED_NEURON
    assert side["heldout"]["tokens_random_only"] > 100


def test_random_neurons_score_near_their_floor(explained: Path) -> None:
    """Random-weight neurons: their floors sit at 0 and their scores a little above (median
    about 0.15 on this tiny model), far from the planted detector's 0.9+."""
    recs = records(explained)
    scores, floors = [], []
    for (layer, n), r in recs.items():
        if (layer, n) == (PLANTED_LAYER, PLANTED_NEURON):
            continue
        for s in r["sides"]:
            if None not in (s["scores"]["random_only"], s["floor"]["random_only"]):
                scores.append(s["scores"]["random_only"])
                floors.append(s["floor"]["random_only"])
    assert len(scores) > 300
    assert abs(float(np.median(floors))) < 0.1
    assert float(np.median(scores)) < 0.3
    assert float(np.median(np.subtract(scores, floors))) < 0.3
