"""Prompt files and the prototype's token forms."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from neuron_signatures.errors import BadPromptsError
from neuron_signatures.prompts import concept_from_id, load_prompts
from neuron_signatures.tokens import is_functional, token_ascii, token_display


def test_json_jsonl_txt(tmp_path: Path) -> None:
    (tmp_path / "a.json").write_text(
        json.dumps([{"id": "seed", "text": "x y"}, {"id": 7, "text": "z", "concept": "z"}])
    )
    (tmp_path / "a.jsonl").write_text('{"id": "a", "text": "one"}\n\n{"id": "b", "text": "two"}\n')
    (tmp_path / "a.txt").write_text("first\n\n  \nsecond\n")
    got = load_prompts(tmp_path / "a.json")
    assert [(p.id, p.text, p.concept) for p in got] == [("seed", "x y", None), ("7", "z", "z")]
    assert [p.id for p in load_prompts(tmp_path / "a.jsonl")] == ["a", "b"]
    assert [(p.id, p.text) for p in load_prompts(tmp_path / "a.txt")] == [
        ("line_1", "first"),
        ("line_4", "second"),
    ]


def test_unreadable(tmp_path: Path) -> None:
    with pytest.raises(BadPromptsError, match="does not exist"):
        load_prompts(tmp_path / "nope.json")
    (tmp_path / "bin.txt").write_bytes(b"\xff\xfe\x00bad")
    with pytest.raises(BadPromptsError, match="UTF-8"):
        load_prompts(tmp_path / "bin.txt")
    (tmp_path / "b.jsonl").write_text("{oops\n")
    with pytest.raises(BadPromptsError, match="line 1 is not valid JSON"):
        load_prompts(tmp_path / "b.jsonl")


def test_token_forms() -> None:
    assert token_ascii("\u2581Austin") == " Austin"
    assert token_ascii("a\nb\rc\td\x07é") == "a<n>b<r>c<t>d<?>"
    assert token_display("\u2581a\nb\t\x07\\") == " a\\nb\\t\\x07\\\\"
    assert token_display("é") == "é"


def test_functional_and_concepts() -> None:
    assert is_functional("\u2581the") and is_functional(",") and is_functional("\u2581is")
    assert not is_functional("\u2581Austin")
    assert concept_from_id("probe_3_New_York") == "New York"
    assert concept_from_id("seed_prompt") is None
