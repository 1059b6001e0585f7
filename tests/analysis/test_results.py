"""Analysis result files as the UIs read them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from neuron_signatures.analysis.results import (
    SIGNATURES_FILE,
    list_rankings,
    load_signatures,
    load_write_scores,
    say_x_check,
    signature_files,
)


def write(path: Path, obj: dict) -> None:
    path.write_text(json.dumps(obj))


def test_rankings_listed_once_in_order(tmp_path: Path) -> None:
    rows = [
        {"rank": 1, "layer": 2, "neuron": 7, "mean_peak_abs": 3.5, "mode_peak_token_ascii": " x"}
    ]
    sel = {"tag": "top50"}
    write(tmp_path / "top_neurons.json", {"kind": "top_neurons", "selection": sel, "neurons": rows})
    write(
        tmp_path / "top_neurons_top50.json",
        {"kind": "top_neurons", "selection": sel, "neurons": rows},
    )
    write(
        tmp_path / "influence_p_dla_last_token_pos3_tok9.json",
        {
            "kind": "influence",
            "prompt_id": "p",
            "metric": "dla",
            "target_mode": "last_token",
            "records": [
                {"rank": 1, "layer": 1, "neuron": 4, "influence": -0.5, "token_ascii": " y"}
            ],
        },
    )
    write(tmp_path / "influence_p_dla_last_token_pos3_tok9_meta.json", {"kind": "meta"})
    write(
        tmp_path / "signatures_x.json",
        {
            "kind": "signatures",
            "neurons": [{"layer": 1, "neuron": 4, "class": "unclassified", "name": None}],
        },
    )
    (tmp_path / "broken.json").write_text("{")
    got = list_rankings(tmp_path)
    assert [r.name for r in got] == [
        "top_neurons_top50.json",
        "influence_p_dla_last_token_pos3_tok9.json",
        "signatures_x.json",
    ]
    top, inf, sig = got
    assert (top.neurons[0].layer, top.neurons[0].neuron, top.neurons[0].score) == (2, 7, 3.5)
    assert inf.neurons[0].score == -0.5 and inf.neurons[0].label == " y"
    assert inf.title == "influence p dla last_token"
    assert sig.neurons[0].label == "unclassified"
    assert load_signatures(tmp_path)[(1, 4)]["class"] == "unclassified"


def test_write_scores_match_the_selected_influence_file(tmp_path: Path) -> None:
    ws = {"top_pos": [{"token": " A", "token_id": 5, "score": 1.0}], "top_neg": [], "explicit": []}
    write(
        tmp_path / "write_scores_a.json",
        {
            "kind": "write_scores",
            "source": "influence_a.csv",
            "neurons": [{"layer": 0, "neuron": 1, "write_scores": ws}],
        },
    )
    write(
        tmp_path / "write_scores_b.json",
        {
            "kind": "write_scores",
            "source": "influence_b.csv",
            "neurons": [{"layer": 0, "neuron": 2, "write_scores": ws}],
        },
    )
    assert set(load_write_scores(tmp_path)) == {(0, 1), (0, 2)}
    assert set(load_write_scores(tmp_path, match="influence_a.json")) == {(0, 1)}
    assert load_write_scores(tmp_path, match="influence_c.json") == {}
    assert load_write_scores(tmp_path / "missing") == {}


def test_signatures_name_their_file_and_one_file_can_be_picked(tmp_path: Path) -> None:
    import os

    def sig(name: str, cls: str, age: float) -> None:
        p = tmp_path / f"signatures_{name}.json"
        write(p, {"kind": "signatures", "neurons": [{"layer": 1, "neuron": 4, "class": cls}]})
        os.utime(p, (p.stat().st_mtime - age,) * 2)

    sig("b_old", "semantic", 100)
    sig("a_new", "say_x", 0)
    write(tmp_path / "signatures_a_new_meta.json", {"kind": "signatures_meta"})
    assert [p.name for p in signature_files(tmp_path)] == ["signatures_a_new.json",
                                                          "signatures_b_old.json"]  # fmt: skip
    merged = load_signatures(tmp_path)[(1, 4)]
    assert merged["class"] == "say_x" and merged[SIGNATURES_FILE] == "signatures_a_new.json"
    one = load_signatures(tmp_path, "signatures_b_old.json")[(1, 4)]
    assert one["class"] == "semantic" and one[SIGNATURES_FILE] == "signatures_b_old.json"
    assert load_signatures(tmp_path, tmp_path / "signatures_a_new.json")[(1, 4)]["class"] == "say_x"
    assert signature_files(tmp_path / "missing") == []


@pytest.mark.parametrize(
    ("fields", "text"),
    [
        ({"say_x_write_rank": 3, "say_x_write_agrees": True},
         "Say ' Austin' · write scores: promoted #3 ✓"),
        ({"say_x_write_rank": 41233, "say_x_write_agrees": False},
         "Say ' Austin' · write scores: rank 41,233 ✗"),
        ({"say_x_write_rank": None, "say_x_write_agrees": None},
         "Say ' Austin' · write scores: not checked"),
        ({}, "Say ' Austin' · write scores: not checked"),  # written before the check existed
    ],
)  # fmt: skip
def test_say_x_check(fields: dict, text: str) -> None:
    check = say_x_check({"class": "say_x", "say_x_token": "▁Austin", **fields})
    assert check is not None and check.describe() == text


def test_say_x_check_absent() -> None:
    assert say_x_check(None) is None
    assert say_x_check({"class": "semantic"}) is None
    assert say_x_check({"say_x_token": None, "say_x_write_rank": 2}) is None
