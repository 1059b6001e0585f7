"""The Steer panel through ``AppTest``: on an atlas page and on a run page, press Run and find the
library's before/after values; the model loads once, on the button, shared with text search."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from streamlit.testing.v1 import AppTest

from neuron_signatures.interventions import (
    Edit,
    InterventionSet,
    add_generation,
    parse_positions,
    run_interventions,
)
from neuron_signatures.web import APP_SCRIPT

PROMPT = "The capital of the state containing Dallas is"


@pytest.fixture(autouse=True)
def fresh_caches() -> Iterator[None]:
    import streamlit as st

    st.cache_resource.clear()
    yield
    st.cache_resource.clear()


def start(**query: Any) -> AppTest:
    at = AppTest.from_file(str(APP_SCRIPT), default_timeout=60)
    for k, v in query.items():
        at.query_params[k] = str(v)
    return at.run()


def press_run(
    at: AppTest, op: str, value: float | None, positions: str, tokens: str, n: int
) -> float:
    """Fill the panel and press Run; returns the value the slider really holds."""
    at.radio(key="steer_op").set_value(op).run()
    at.text_area(key="steer_prompt").input(PROMPT)
    slider = next(s for s in at.slider if s.label in ("value", "multiplier"))
    if value is not None:
        slider.set_value(value)
    at.text_input(key="steer_positions").input(positions)
    at.text_input(key="steer_tokens").input(tokens)
    at.number_input(key="steer_generate").set_value(n)
    at.button(key="steer_go").click().run()
    assert not at.exception and not at.error, [e.value for e in [*at.exception, *at.error]]
    return float(slider.value)


def panel(at: AppTest) -> Any:
    (box,) = [e for e in at.expander if e.label == "Steer"]
    return box


def check_shown(at: AppTest, want: Any) -> None:
    """The panel's tables, KL and continuations are the library's."""
    box = panel(at)
    tables = [d.value for d in box.dataframe]  # before, after, listed tokens
    for r in (0, 1):
        df = tables[r]
        assert df["token_id"].tolist() == [t.token_id for t in want.rows[r].top]
        assert df["prob"].tolist() == pytest.approx([t.prob for t in want.rows[r].top])
    listed = tables[2]
    for j, t in enumerate(want.rows[1].listed):
        assert listed["logit after"][j] == pytest.approx(t.logit)
        assert listed["rank after"][j] == t.rank
        assert listed["logit before"][j] == pytest.approx(want.rows[0].listed[j].logit)
    (kl,) = box.metric
    assert kl.label == "KL(before‖after)" and kl.value == f"{want.rows[1].kl:.4g} nats"
    conts = [r.continuation for r in want.rows] if want.generation else []
    assert [c.value for c in box.code] == conts


def test_steer_on_an_atlas_page(web_atlas: Path, atlas_lm: Any, monkeypatch: Any) -> None:
    from neuron_signatures.atlas import search

    loads: list[int] = []
    monkeypatch.setattr(search, "load_atlas_model", lambda atlas: loads.append(1) or atlas_lm)
    at = start(atlas=web_atlas, layer=1, neuron=3)
    assert not at.exception and loads == []  # nothing loads until Run is pressed
    assert not panel(at).dataframe
    value = press_run(at, "add", 6.0, "all", " Austin| Dallas", 4)
    assert value != 0.0 and loads == [1]
    tok = atlas_lm.tokenizer
    listed = [tok.convert_tokens_to_ids(w) for w in ("Austin", "Dallas")]
    sets = [InterventionSet((Edit(1, 3, "add", value),), "after")]
    want = run_interventions(atlas_lm, PROMPT, sets, parse_positions("all"), listed)
    add_generation(atlas_lm, want, sets, parse_positions("all"), 4)
    check_shown(at, want)
    # text search runs the same cached model: no second load
    at.radio(key="atlas_page").set_value("Search by text").run()
    at.text_area(key="atlas_text").input("The capital of Texas")
    at.button(key="atlas_text_go").click().run()
    assert not at.exception and loads == [1]


def test_steer_on_a_run_page(web_run: Path, atlas_lm: Any, monkeypatch: Any) -> None:
    from neuron_signatures import models

    loads: list[tuple] = []
    monkeypatch.setattr(models, "load_model", lambda *a: loads.append(a) or atlas_lm)
    at = start(run_dir=web_run)
    m = re.search(r"layer (\d+), neuron (\d+)", at.subheader[0].value)
    assert m is not None and loads == []
    layer, neuron = int(m.group(1)), int(m.group(2))
    press_run(at, "scale", 3.0, "last", "Austin", 0)
    assert len(loads) == 1 and not panel(at).code  # no generation asked
    sets = [InterventionSet((Edit(layer, neuron, "scale", 3.0),), "after")]
    listed = [atlas_lm.tokenizer.convert_tokens_to_ids("Austin")]
    want = run_interventions(atlas_lm, PROMPT, sets, parse_positions("last"), listed)
    assert want.rows[1].kl > 0
    check_shown(at, want)


def test_bad_input_shows_one_error(web_atlas: Path, atlas_lm: Any, monkeypatch: Any) -> None:
    from neuron_signatures.atlas import search

    monkeypatch.setattr(search, "load_atlas_model", lambda atlas: atlas_lm)
    at = start(atlas=web_atlas, layer=0, neuron=2)
    at.button(key="steer_go").click().run()  # the atlas page has no default prompt
    assert not at.exception and "prompt (--prompt) is empty" in at.error[0].value
    at.text_area(key="steer_prompt").input(PROMPT)
    at.text_input(key="steer_positions").input("99")
    at.button(key="steer_go").click().run()
    assert not at.exception and "outside the prompt" in at.error[0].value
    assert not panel(at).dataframe
