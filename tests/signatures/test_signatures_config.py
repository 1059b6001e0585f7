"""Signatures inputs: TOML config (defaults, validation, layer scaling) and neuron selections."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import numpy as np
import pytest

from neuron_signatures.errors import BadArgumentError
from neuron_signatures.signatures.config import (
    SignatureConfig,
    explicit_selection,
    load_config,
    parse_neuron_ids,
    read_selection,
)

EXAMPLE = Path(__file__).resolve().parents[2] / "docs" / "signatures.example.toml"


@pytest.mark.parametrize(
    ("n_layers", "bounds"), [(26, (3, 7)), (18, (2, 5)), (42, (5, 11)), (4, (0, 1))]
)
def test_layer_bounds_scale_with_depth(n_layers: int, bounds: tuple[int, int]) -> None:
    assert SignatureConfig().layer_bounds(n_layers) == bounds


def test_layer_bounds_can_be_overridden() -> None:
    assert SignatureConfig(early_layer_max=1, late_layer_min=9).layer_bounds(18) == (1, 9)


def test_example_file_holds_the_defaults() -> None:
    assert load_config(EXAMPLE) == SignatureConfig()
    keys = set(tomllib.loads(EXAMPLE.read_text())["signatures"])
    assert keys == set(SignatureConfig().to_dict()) - {"early_layer_max", "late_layer_min",
                                                       "functional_tokens"}  # fmt: skip


def test_toml_values_override_defaults(tmp_path: Path) -> None:
    p = tmp_path / "c.toml"
    p.write_text('semantic_peak_consistency = 1\nlate_layer_min = 9\nblacklist = ["x"]\n'
                 'peak_mode = "signed"\n')  # fmt: skip
    cfg = load_config(p)
    assert cfg.semantic_peak_consistency == 1.0 and isinstance(cfg.semantic_peak_consistency, float)
    assert cfg.late_layer_min == 9 and cfg.blacklist == ("x",) and cfg.peak_mode == "signed"
    assert cfg.to_dict(26)["late_layer_min_resolved"] == 9


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("nope = 1\n", "unknown key"),
        ("say_x_window = 0\n", "say_x_window"),
        ("peak_mode = 'max'\n", "not one of"),
        ("blacklist = 'x'\n", "list of strings"),
        ("min_peak = true\n", "boolean"),
        ("say_x_format = 'Say'\n", "{token}"),
        ("= broken", "not valid TOML"),
    ],
)
def test_bad_config_is_a_domain_error(tmp_path: Path, text: str, message: str) -> None:
    p = tmp_path / "c.toml"
    p.write_text(text)
    with pytest.raises(BadArgumentError, match=message):
        load_config(p)


def test_missing_config_file(tmp_path: Path) -> None:
    with pytest.raises(BadArgumentError, match="does not exist"):
        load_config(tmp_path / "none.toml")


def test_influence_json_selection_keeps_order_and_influence(tmp_path: Path) -> None:
    recs = [
        {"rank": r, "layer": la, "neuron": n, "influence": v}
        for r, la, n, v in [(1, 3, 7, -4.0), (2, 1, 2, 3.0), (3, 3, 7, 1.0), (4, 0, 0, 0.5)]
    ]
    p = tmp_path / "influence_seed_dla_x.json"
    p.write_text(json.dumps({"format_version": 1, "kind": "influence", "records": recs}))
    sel = read_selection(p, top_n=2)
    assert sel.layers.tolist() == [3, 1] and sel.neurons.tolist() == [7, 2]
    assert sel.influence is not None and sel.influence.tolist() == [-4.0, 3.0]
    assert sel.tag == "influence_seed_dla_x_top2" and sel.source == p.name


def test_influence_csv_sorted_by_abs_influence(tmp_path: Path) -> None:
    p = tmp_path / "influence.csv"
    p.write_text("layer,neuron,influence\n0,1,0.5\n2,3,-2.0\n1,1,1.0\n")
    sel = read_selection(p)
    assert list(zip(sel.layers.tolist(), sel.neurons.tolist(), strict=True)) == [
        (2, 3), (1, 1), (0, 1)]  # fmt: skip
    assert sel.influence is not None and sel.influence.tolist() == [-2.0, 1.0, 0.5]


def test_top_neurons_json_has_no_influence(tmp_path: Path) -> None:
    p = tmp_path / "top_neurons.json"
    rows = [{"rank": 2, "layer": 1, "neuron": 4, "mean_peak_abs": 1.0},
            {"rank": 1, "layer": 0, "neuron": 9, "mean_peak_abs": 2.0}]  # fmt: skip
    p.write_text(json.dumps({"format_version": 1, "kind": "top_neurons", "neurons": rows}))
    sel = read_selection(p)
    assert sel.layers.tolist() == [0, 1] and sel.influence is None


def test_explicit_lists() -> None:
    sel = explicit_selection("3", "12,40")
    assert sel.layers.tolist() == [3, 3] and sel.neurons.tolist() == [12, 40]
    assert parse_neuron_ids("3:12, 5:40,3:12").neurons.tolist() == [12, 40]  # deduplicated
    mixed = parse_neuron_ids("L3/N12, 5:40 L3/N12,l7/n2")
    assert mixed.layers.tolist() == [3, 5, 7] and mixed.neurons.tolist() == [12, 40, 2]
    with pytest.raises(BadArgumentError, match="L3/N12"):
        parse_neuron_ids("L3/X12")
    assert np.array_equal(explicit_selection("3,5", "12,40").layers, [3, 5])
    with pytest.raises(BadArgumentError, match="one layer per neuron"):
        explicit_selection("1,2,3", "4,5")
    with pytest.raises(BadArgumentError, match="layer:neuron"):
        parse_neuron_ids("3-12")


def test_bad_selection_files(tmp_path: Path) -> None:
    with pytest.raises(BadArgumentError, match="does not exist"):
        read_selection(tmp_path / "x.json")
    (tmp_path / "bad.json").write_text("[1, 2]")
    with pytest.raises(BadArgumentError, match="not a ranking"):
        read_selection(tmp_path / "bad.json")
    (tmp_path / "bad.csv").write_text("a,b\n1,2\n")
    with pytest.raises(BadArgumentError, match="layer/neuron"):
        read_selection(tmp_path / "bad.csv")
