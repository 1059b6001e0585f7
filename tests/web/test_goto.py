"""Typed neurons (``L17/N1152``, ``17:1152``) in the "go to" box, and ``?layer=&neuron=`` URLs that
pick the neuron on load and follow the selection."""

from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from neuron_signatures.web import APP_SCRIPT
from tests.web.fixtures import INFLUENCE_ROWS
from tests.web.test_app import TIMEOUT, press, shown, start


def goto(at: AppTest, text: str) -> AppTest:
    at.text_input(key="goto_text").input(text).run()
    return at


def sidebar_errors(at: AppTest) -> list[str]:
    return [e.value for e in at.sidebar.error]


@pytest.mark.parametrize("typed", ["L0/N5", "0:5", "0/5", "layer 0 neuron 5"])
def test_goto_selects_the_neuron_in_the_current_list(web_run: Path, typed: str) -> None:
    at = goto(start(web_run), typed)
    assert shown(at) == (0, 5)
    assert at.selectbox(key="mode").value == "influence_json"  # (0, 5) is candidate 4
    assert at.selectbox(key="cand_pick").value == 3
    assert press(at, "Next") == (INFLUENCE_ROWS[4][0], INFLUENCE_ROWS[4][1])


def test_goto_outside_the_list_switches_to_manual(web_run: Path) -> None:
    at = goto(start(web_run), "L1/N6")
    assert shown(at) == (1, 6) and at.selectbox(key="mode").value == "manual"
    assert press(at, "Next") == (1, 7)


@pytest.mark.parametrize(
    ("typed", "message"),
    [
        ("L2/N1", "layer 2 is out of range"),
        ("1:8", "neuron 8 is out of range"),
        ("hello", "is not a neuron id: type it as L17/N1152"),
    ],
)
def test_goto_rejects_bad_neurons(web_run: Path, typed: str, message: str) -> None:
    at = start(web_run)
    before = shown(at)
    goto(at, typed)
    assert any(message in e for e in sidebar_errors(at)), sidebar_errors(at)
    assert shown(at) == before and not at.exception


def query(**params: str) -> dict[str, str]:
    return params


@pytest.mark.parametrize(
    ("params", "expected", "mode"),
    [
        (query(layer="1", neuron="7"), (1, 7), "influence_json"),  # in the list: selected there
        (query(layer="0", neuron="6"), (0, 6), "manual"),  # not in the list: manual
        (query(neuron="L1/N1"), (1, 1), "influence_json"),
        (query(neuron="0:3"), (0, 3), "manual"),
    ],
)
def test_url_selects_the_neuron_on_load(
    web_run: Path, params: dict[str, str], expected: tuple[int, int], mode: str
) -> None:
    at = AppTest.from_file(str(APP_SCRIPT), default_timeout=TIMEOUT)
    at.query_params.update(run_dir=str(web_run), **params)
    at.run()
    assert shown(at) == expected and at.selectbox(key="mode").value == mode
    assert (at.query_params["layer"], at.query_params["neuron"]) == tuple(map(str, expected))


def test_url_follows_the_selection(web_run: Path) -> None:
    at = start(web_run)
    first = shown(at)
    assert (at.query_params["layer"], at.query_params["neuron"]) == tuple(map(str, first))
    layer, neuron = press(at, "Next")
    assert at.query_params["layer"] == str(layer) and at.query_params["neuron"] == str(neuron)
    assert at.query_params["run_dir"] == str(web_run)  # other parameters stay
    goto(at, "1:6")
    assert (at.query_params["layer"], at.query_params["neuron"]) == ("1", "6")


def test_bad_url_neuron_shows_why(web_run: Path) -> None:
    at = AppTest.from_file(str(APP_SCRIPT), default_timeout=TIMEOUT)
    at.query_params.update(run_dir=str(web_run), layer="5", neuron="1")
    at.run()
    assert any("URL neuron '5:1': layer 5 is out of range" in e for e in sidebar_errors(at))
    assert shown(at) == (INFLUENCE_ROWS[0][0], INFLUENCE_ROWS[0][1])  # the default neuron
