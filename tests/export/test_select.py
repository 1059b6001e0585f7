"""``parse_neurons``: ids, layer ranges, defaults, and every bad input's one-line message."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from neuron_signatures.atlas import open_atlas
from neuron_signatures.errors import BadArgumentError
from neuron_signatures.export.select import parse_neurons


def fake_atlas(layers: list[int], n_layers: int = 6, d_mlp: int = 8) -> Any:
    """What ``parse_neurons`` reads of an atlas: its layers and the model's shape."""
    return SimpleNamespace(layers=layers, n_layers=n_layers, d_mlp=d_mlp, root=Path("A"))


def test_default_is_every_neuron_of_the_real_atlas(export_atlas: Path) -> None:
    atlas = open_atlas(export_atlas)
    got = parse_neurons(None, None, atlas)
    manifest = atlas.manifest
    want = {(lay, n) for lay in manifest["layers"] for n in range(manifest["model"]["d_mlp"])}
    assert set(got) == want and len(got) == len(want)
    assert got == sorted(got)


def test_ids_in_every_form_sorted_without_duplicates() -> None:
    a = fake_atlas([0, 2, 5])
    assert parse_neurons("L5/N7, 2:3,L2/N3 0/0", None, a) == [(0, 0), (2, 3), (5, 7)]


@pytest.mark.parametrize(
    ("layers", "want"), [("2-5", [2, 5]), ("0,5", [0, 5]), ("all", [0, 2, 5]), ("5", [5])]
)
def test_layers_pick_every_neuron_of_those_layers(layers: str, want: list[int]) -> None:
    got = parse_neurons(None, layers, fake_atlas([0, 2, 5], d_mlp=4))
    assert got == [(lay, n) for lay in want for n in range(4)]


def test_neurons_are_limited_to_the_layers() -> None:
    assert parse_neurons("L0/N1,L2/N3,L5/N4", "2-5", fake_atlas([0, 2, 5])) == [(2, 3), (5, 4)]


@pytest.mark.parametrize(
    ("neurons", "layers", "needle"),
    [
        ("L9/N0", None, "layers 0-5"),  # not a layer of the model
        ("L2/N8", None, "neurons 0-7"),  # past d_mlp
        ("L1/N0", None, "layers: 0,2-3"),  # a model layer the atlas does not hold
        ("hello", None, "L17/N1152"),  # not an id
        ("", None, "empty"),
        (None, "4", "layers: 0,2-3"),
        (None, "1,2", "layer 1 is not"),  # named alone: must be in the atlas
        (None, "6-7", "layer 6 is not"),  # past the model's layers
        (None, "1-1", "no layer of it"),
        (None, "3-2", "reversed"),
        (None, "a-b", "0,3,5-7"),
        ("L0/N1", "2", "widen"),  # nothing left
    ],
)
def test_bad_selections_name_the_valid_range(
    neurons: str | None, layers: str | None, needle: str
) -> None:
    with pytest.raises(BadArgumentError) as e:
        parse_neurons(neurons, layers, fake_atlas([0, 2, 3]))
    assert needle in str(e.value) and "\n" not in str(e.value)
