"""``neuron-signatures neurons``: a table or JSON whose rows are neuron ids; bad input is one
line and exit 2."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from neuron_signatures.cli import main
from tests.explain.conftest import PLANTED_LAYER, PLANTED_NEURON, PLANTED_WORD

PLANTED = f"L{PLANTED_LAYER}/N{PLANTED_NEURON}"


def test_table(explained: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["neurons", "--atlas", str(explained), "--query", PLANTED_WORD, "--sort", "score"]
    assert main([*argv, "--min_score", "0.9", "--layers", f"{PLANTED_LAYER}"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[:4] == ["neuron", "side", "explainer", "score"]
    body, footer = lines[1:-1], lines[-1]
    assert body and body[0].split()[:3] == [PLANTED, "positive", "token-lookup"]
    assert all(re.match(r"L\d+/N\d+ ", line) for line in body)
    assert all(PLANTED_WORD in line for line in body)
    assert footer.startswith(f"{len(body)} rows in ")


def test_json(explained: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["neurons", "--atlas", str(explained), "--layers", "1-2", "--side", "negative"]
    assert main([*argv, "--sort", "density", "--limit", "7", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    rows = out["rows"]
    assert len(rows) == 7 and out["query"]["layers"] == [1, 2]
    assert all(re.fullmatch(r"L\d+/N\d+", r["id"]) for r in rows)
    assert all(r["id"] == f"L{r['layer']}/N{r['neuron']}" and r["layer"] in (1, 2) for r in rows)
    assert {r["side"] for r in rows} == {"negative"}
    dens = [r["density"] for r in rows]
    assert dens == sorted(dens, reverse=True)


def test_nothing_matches(explained: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["neurons", "--atlas", str(explained), "--query", '"( * - )']) == 0
    assert capsys.readouterr().out.strip() == "no neuron matches these filters"


@pytest.mark.parametrize(
    ("flags", "words"),
    [
        (["--layers", "99"], "layer 99 is not in atlas"),
        (["--layers", "x"], "not a list like"),
        (["--sort", "bogus"], "is not one of"),
        (["--limit", "0"], "--limit"),
    ],
)
def test_bad_input_one_line_exit_2(
    explained: Path, capsys: pytest.CaptureFixture[str], flags: list[str], words: str
) -> None:
    assert main(["neurons", "--atlas", str(explained), *flags]) == 2
    err = capsys.readouterr().err
    assert words in err and err.count("\n") == 1


def test_bad_flag_one_line_exit_2(explained: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as e:
        main(["neurons", "--atlas", str(explained), "--min_score", "high"])
    err = capsys.readouterr().err
    assert e.value.code == 2 and "invalid float value" in err and err.count("\n") == 1


def test_no_atlas_and_no_explanations(
    planted_atlas: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["neurons", "--atlas", str(tmp_path / "none"), "--query", "x"]) == 2
    err = capsys.readouterr().err
    assert "is not an atlas" in err and err.count("\n") == 1
    root = tmp_path / "A"
    shutil.copytree(planted_atlas, root)
    assert main(["neurons", "--atlas", str(root), "--query", "capital city"]) == 2
    err = capsys.readouterr().err
    assert "has none: run `neuron-signatures explain --atlas" in err and err.count("\n") == 1
    assert main(["neurons", "--atlas", str(root), "--limit", "3"]) == 0  # stats still listed
    body = capsys.readouterr().out.splitlines()[1:-1]
    assert [line.split()[0] for line in body] == ["L0/N0", "L0/N1", "L0/N2"]
