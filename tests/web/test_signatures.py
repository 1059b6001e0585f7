"""The neuron card names the signatures file a class came from, lets the user pick the file, and
shows whether the write scores agree with a Say X reading (old files without it still load)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from tests.web.fixtures import write_json
from tests.web.test_app import html, shown, start

NEWER = [
    {"layer": 1, "neuron": 3, "class": "say_x", "name": "Say (<Austin>)",
     "say_x_token": "▁<Austin>", "say_x_write_rank": 3, "say_x_write_agrees": True},
    {"layer": 0, "neuron": 5, "class": "say_x", "name": "Say (Paris)", "say_x_token": "▁Paris",
     "say_x_write_rank": 41233, "say_x_write_agrees": False},
    {"layer": 1, "neuron": 7, "class": "say_x", "name": "Say (Rome)", "say_x_token": "▁Rome"},
]  # fmt: skip


@pytest.fixture
def two_files(web_run: Path, tmp_path: Path) -> Path:
    """``signatures_demo.json`` (old format, Texas detector) and a newer ``signatures_say.json``."""
    run = tmp_path / "run"
    shutil.copytree(web_run, run)
    newer = run / "analysis" / "signatures_say.json"
    write_json(newer, {"format_version": 1, "kind": "signatures", "neurons": NEWER})
    old = run / "analysis" / "signatures_demo.json"
    t = newer.stat().st_mtime - 60
    os.utime(old, (t, t))
    return run


def card(at: AppTest) -> str:
    return "\n".join(h.value for h in at.html if "nsh-signature" in h.value)


def goto(at: AppTest, text: str) -> None:
    at.text_input(key="goto_text").input(text).run()


def test_card_names_the_file_and_the_say_x_check(two_files: Path) -> None:
    at = start(two_files)
    box = at.selectbox(key="sig_file")
    assert box.options == ["all 2 files (newest wins)", "signatures_say.json",
                           "signatures_demo.json"]  # fmt: skip
    assert shown(at) == (1, 3)
    text = card(at)
    assert "say_x - Say (&lt;Austin&gt;)" in text and "from signatures_say.json" in text
    assert "Say &#x27; &lt;Austin&gt;&#x27; · write scores: promoted #3 ✓" in text
    goto(at, "0:5")
    assert "Say &#x27; Paris&#x27; · write scores: rank 41,233 ✗" in card(at)
    goto(at, "1:7")
    assert "write scores: not checked" in card(at)  # fields missing in the record


def test_picking_a_file_shows_its_class(two_files: Path) -> None:
    at = start(two_files)
    at.selectbox(key="sig_file").set_value("signatures_demo.json").run()
    assert shown(at) == (1, 3)
    text = card(at)
    assert "entity - Texas detector" in text and "from signatures_demo.json" in text
    assert "write scores:" not in text  # the old format has no Say X fields
    goto(at, "0:5")
    assert card(at) == ""  # not in that file
    at.selectbox(key="sig_file").set_value("signatures_say.json").run()
    assert "Say (Paris)" in card(at)


def test_one_old_file_still_works(web_run: Path) -> None:
    at = start(web_run)
    assert at.selectbox(key="sig_file").options == ["all 1 file (newest wins)",
                                                    "signatures_demo.json"]  # fmt: skip
    assert "Texas detector" in html(at) and "write scores:" not in card(at)
