"""``neuron``: the example's token stays marked when piped, ``--rank_by`` is never ignored in
silence, and ``--search_text`` refuses bad input before its model loads."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from neuron_signatures import models
from neuron_signatures.atlas import open_atlas
from neuron_signatures.commands.neuron import MARK
from neuron_signatures.tokens import token_display
from tests.cli_run import run_cli


@pytest.fixture(scope="module")
def atlas_dir(atlas_lm: Any, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tests.atlas.conftest import build, corpus_lines

    root = tmp_path_factory.mktemp("neuron-cmd")
    corpus = root / "corpus.txt"
    corpus.write_text("\n".join(corpus_lines()) + "\n")
    return Path(build(atlas_lm, root / "A", corpus, layers=[1, 2]))


@pytest.fixture
def no_model(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any model or tokenizer load fails the test."""

    def refuse(*_: object, **__: object) -> None:
        raise AssertionError("a model or tokenizer was loaded")

    for name in ("load_model", "load_tokenizer"):
        monkeypatch.setattr(models, name, refuse)
        monkeypatch.setattr(models.load, name, refuse)


def test_piped_output_marks_the_examples_token(
    atlas_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Captured stdout is no terminal: the underline is gone, so brackets mark the token.
    Before the fix no example showed which token it is about."""
    rc, out, err = run_cli(capsys, "neuron", "--atlas", str(atlas_dir), "L2/N7", "--examples", "3")
    assert rc == 0, err
    rec = open_atlas(atlas_dir).neuron(2, 7)
    strips = [line for line in out.splitlines() if MARK[0] in line]
    examples = [*rec.top[:3], *rec.bottom[:3]]
    shown_samples = sum(len(iv.samples[:2]) for iv in rec.intervals)
    assert len(strips) == len(examples) + shown_samples
    for line, ex in zip(strips, examples, strict=False):
        assert line.count(MARK[0]) == 1 and line.count(MARK[1]) == 1
        assert f"{MARK[0]}{token_display(ex.tokens[ex.position])}{MARK[1]}" in line
        assert line.replace(MARK[0], "").replace(MARK[1], "") == "".join(
            token_display(t) for t in ex.tokens
        )


@pytest.mark.parametrize(
    "extra",
    [["L2/N7"], ["--search_token", "Austin"]],
    ids=["neuron-id", "search-token"],
)
def test_rank_by_without_search_text_is_refused(
    atlas_dir: Path, capsys: pytest.CaptureFixture[str], extra: list[str]
) -> None:
    """Before the fix ``--rank_by`` was dropped in silence (exit 0)."""
    rc, out, err = run_cli(
        capsys, "neuron", "--atlas", str(atlas_dir), *extra, "--rank_by", "frac_of_max"
    )
    assert rc == 2 and out == "" and err.count("\n") == 1, err
    assert err.startswith("error: --rank_by ranks the neurons of --search_text only")


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--search_text", ""], "the text to search is empty"),
        (["--search_text", "Austin", "--layers", "0"], "--layers [0] are not in the atlas"),
        (["--search_text", "Austin", "--top_n", "0"], "--top_n must be at least 1"),
    ],
    ids=["empty", "layer", "top_n"],
)
def test_text_search_refuses_before_the_model_loads(
    atlas_dir: Path,
    capsys: pytest.CaptureFixture[str],
    no_model: None,
    extra: list[str],
    message: str,
) -> None:
    """Before the fix these failed only after the atlas's model had loaded (8-16 s)."""
    rc, out, err = run_cli(capsys, "neuron", "--atlas", str(atlas_dir), *extra)
    assert rc == 2 and out == "" and err.count("\n") == 1 and err.startswith("error: "), err
    assert message in err
