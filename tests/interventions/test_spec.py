"""Parsing and validation of edits, sets and positions (no model)."""

from __future__ import annotations

import pytest

from neuron_signatures.errors import BadArgumentError
from neuron_signatures.interventions import (
    Edit,
    InterventionSet,
    Positions,
    check_sets,
    parse_edit,
    parse_positions,
    parse_set,
)


@pytest.mark.parametrize(
    ("text", "op", "want"),
    [
        ("L17/N345=0", "set", Edit(17, 345, "set", 0.0)),
        ("16:1682=3", "scale", Edit(16, 1682, "scale", 3.0)),
        ("L11/N441=+2.5", "add", Edit(11, 441, "add", 2.5)),
        (" 3/4 = -1e-2 ", "add", Edit(3, 4, "add", -0.01)),
    ],
)
def test_parse_edit(text: str, op: str, want: Edit) -> None:
    assert parse_edit(text, op) == want


def test_edit_names() -> None:
    assert [str(parse_edit("L1/N2=0.5", op)) for op in ("set", "scale", "add")] == [
        "L1/N2=0.5",
        "L1/N2×0.5",
        "L1/N2+=0.5",
    ]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("L17/N345", "is not NEURON=VALUE"),
        ("=3", "is not NEURON=VALUE"),
        ("foo=1", "is not a neuron id"),
        ("L1/N2=abc", "is not a number"),
        ("L1/N2=nan", "finite"),
        ("L1/N2=inf", "finite"),
    ],
)
def test_parse_edit_errors(text: str, message: str) -> None:
    with pytest.raises(BadArgumentError, match=message):
        parse_edit(text, "set")


def test_parse_set_keeps_order_and_ops() -> None:
    s = parse_set("L3/N4=0; scale L5/N6=2;ADD 7:1=-1.5;", "set 2")
    assert s == InterventionSet(
        (Edit(3, 4, "set", 0.0), Edit(5, 6, "scale", 2.0), Edit(7, 1, "add", -1.5)), "set 2"
    )
    assert s.layers == [3, 5, 7]
    assert s.describe() == "L3/N4=0, L5/N6×2, L7/N1+=-1.5"
    for bad in ("", " ; ", "mul L1/N2=3"):
        with pytest.raises(BadArgumentError):
            parse_set(bad, "x")


def test_positions() -> None:
    assert parse_positions(None) == Positions("last")
    assert parse_positions(" ALL ") == Positions("all")
    assert parse_positions("3,5,-1") == Positions("list", (3, 5, -1))
    assert parse_positions("last").resolve(9) == [8]
    assert parse_positions("all").resolve(9) is None
    assert parse_positions("5,3,-1,8").resolve(9) == [3, 5, 8]  # sorted, -1 → 8, deduplicated
    assert str(parse_positions("3,5")) == "3,5"
    for bad in ("first", "3,x", ",", ""):
        if bad == "":
            assert parse_positions(bad) == Positions("last")  # empty → the default
            continue
        with pytest.raises(BadArgumentError, match="--positions"):
            parse_positions(bad)
    with pytest.raises(BadArgumentError, match=r"outside the prompt \(9 tokens.*-9\.\.8"):
        parse_positions("9").resolve(9)
    with pytest.raises(BadArgumentError, match="outside"):
        parse_positions("-10").resolve(9)


def test_check_sets_names_the_valid_range() -> None:
    ok = [InterventionSet((Edit(2, 63, "set", 0.0),))]
    check_sets(ok, 3, 64)
    with pytest.raises(BadArgumentError, match=r"layer 3 is out of range.*layers 0-2"):
        check_sets([InterventionSet((Edit(3, 0, "set", 0.0),))], 3, 64)
    with pytest.raises(BadArgumentError, match=r"neuron 64 is out of range.*neurons 0-63"):
        check_sets([*ok, InterventionSet((Edit(0, 64, "add", 1.0),))], 3, 64)
