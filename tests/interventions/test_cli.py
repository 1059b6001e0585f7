"""``neuron-signatures intervene`` in-process: the report, the JSON against the plain model loaded
independently from the same folder, and every bad input's one-line error."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch

from neuron_signatures.cli import main
from tests.cli_run import run_cli
from tests.interventions.reference import PROMPT, plain_logits, prompt_ids

EXACT = ["--device", "cpu", "--model_dtype", "fp32"]


@pytest.fixture(scope="module")
def plain(tiny_model_dir: Path) -> tuple[Any, Any]:
    """The folder's model and tokenizer through plain transformers (eager attention)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, attn_implementation="eager")
    return model.eval(), AutoTokenizer.from_pretrained(tiny_model_dir)


def intervene(model_dir: Path, *flags: str) -> int:
    return main(["intervene", "--model_name", str(model_dir), *EXACT, *flags])


def test_report_as_in_the_issue(tiny_model_dir: Path, capsys: pytest.CaptureFixture) -> None:
    flags = ["--prompt", PROMPT, "--set", "L1/N3=0", "--scale", "2:5=3", "--add", "L0/N7=+2.5"]
    rc = intervene(tiny_model_dir, *flags, "--tokens", " Austin| Dallas", "--generate", "3")
    out = capsys.readouterr().out
    assert rc == 0
    assert "  after: L1/N3=0, L2/N5×3, L0/N7+=2.5" in out  # command-line order kept
    assert "edits at positions last ([8])" in out
    assert "next token, top 10:" in out and "'Austin'" in out and "'Dallas'" in out
    assert "KL(before‖after), nats:" in out
    assert "continuations (3 new tokens, greedy):" in out


def test_json_equals_the_plain_model(
    tiny_model_dir: Path, plain: tuple[Any, Any], capsys: pytest.CaptureFixture
) -> None:
    ref, tok = plain
    flags = ["--prompt", PROMPT, "--scale", "L2/N5=3", "--add", "L2/N5=-1", "--also", "0:7=4"]
    rc = intervene(tiny_model_dir, *flags, "--positions", "all", "--tokens", " Austin")
    out = capsys.readouterr().out
    assert rc == 0 and "edits at positions all (every position)" in out
    assert "  set 1: L2/N5×3, L2/N5+=-1\n  set 2: L0/N7=4\n" in out
    rc = intervene(tiny_model_dir, *flags, "--tokens_id", "9", "--json", "--generate", "4")
    assert rc == 0
    doc = json.loads(capsys.readouterr().out)
    ids = prompt_ids(tok)
    assert doc["token_ids"] == ids and doc["positions"] == "last"
    assert [r["label"] for r in doc["rows"]] == ["before", "set 1", "set 2"]
    assert doc["rows"][1]["edits"] == ["L2/N5×3", "L2/N5+=-1"]
    edits = [[], [(2, 5, "scale", 3.0), (2, 5, "add", -1.0)], [(0, 7, "set", 4.0)]]
    for row, e in zip(doc["rows"], edits, strict=True):
        want = plain_logits(ref, ids, e, [len(ids) - 1])[-1]
        (stat,) = row["listed"]
        assert stat["token_id"] == 9 and stat["logit"] == pytest.approx(float(want[9]), abs=1e-5)
        assert row["top"][0]["token_id"] == int(want.argmax())
    with torch.no_grad():
        greedy = ref.generate(torch.tensor([ids]), max_new_tokens=4, do_sample=False)
    assert (
        doc["rows"][0]["continuation_ids"]
        == greedy[0, len(ids) :].tolist()[: len(doc["rows"][0]["continuation_ids"])]
    )
    assert doc["generation"] == {"n_new": 4, "temperature": 0.0, "seed": 0}


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--set", "foo=1"], "is not a neuron id"),
        (["--set", "L1/N2=abc"], "is not a number"),
        (["--scale", "L1/N2"], "is not NEURON=VALUE"),
        (["--also", " ; "], "--also"),
        (["--positions", "first"], "--positions"),
        (["--positions", "40"], "outside the prompt"),
        (["--tokens", "Austin Dallas"], "not one"),
        (["--generate", "-1"], "--generate"),
        (["--set"], "expected one argument"),
        (["--set", "L3/N0=1"], "layer 3 is out of range"),
        (["--add", "L0/N64=1"], "neuron 64 is out of range"),
    ],
)
def test_bad_input_one_line(
    tiny_model_dir: Path, capsys: pytest.CaptureFixture, flags: list[str], message: str
) -> None:
    model = ["--model_name", str(tiny_model_dir), *EXACT]
    rc, out, err = run_cli(capsys, "intervene", *model, "--prompt", PROMPT, *flags)
    assert rc == 2 and message in err and err.count("\n") == 1 and not out, err


@pytest.mark.parametrize("prompt", ["", "   "])
def test_empty_prompt(prompt: str, capsys: pytest.CaptureFixture) -> None:
    rc, _out, err = run_cli(capsys, "intervene", "--prompt", prompt, "--set", "L0/N0=1")
    assert (
        rc == 2
        and err.strip()
        == "error: the prompt (--prompt) is empty: give a prompt text, e.g. 'The capital of'"
    )


def test_unknown_model_one_line(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    rc, _out, err = run_cli(capsys, "intervene", "--prompt", PROMPT, "--model_name", str(tmp_path))
    assert rc == 2 and err.startswith("error:") and err.count("\n") == 1, err


def test_sets_of_the_command_line() -> None:
    from neuron_signatures.commands.intervene import parse_sets
    from neuron_signatures.interventions import Edit

    (only,) = parse_sets(None, ["L1/N2=0; add 2:3=1"])
    assert only.label == "after" and only.edits == (Edit(1, 2, "set", 0), Edit(2, 3, "add", 1))
    sets = parse_sets([("scale", "L0/N1=2"), ("set", "L0/N1=5")], ["L1/N2=0", "scale L2/N0=-1"])
    assert [s.label for s in sets] == ["set 1", "set 2", "set 3"]
    assert sets[0].edits == (Edit(0, 1, "scale", 2), Edit(0, 1, "set", 5))  # flag order kept
    assert parse_sets(None, []) == []  # no edit: the model's prediction only
