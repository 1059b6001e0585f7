"""A neuron whose activations are not finite: counted by the atlas and shown on every page.

The tiny model's last layer gets NaN in one neuron's up projection, so ``hook_post`` of that
neuron is NaN on every token (later layers do not exist, so nothing else is touched).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
import torch
from streamlit.testing.v1 import AppTest

from neuron_signatures.atlas import open_atlas
from tests.cli_run import run_cli

LAYER, BAD, GOOD = 2, 5, 6


@pytest.fixture(scope="module")
def nan_atlas(tmp_path_factory: pytest.TempPathFactory, tiny_tokenizer: Any) -> Path:
    from neuron_signatures.models import wrap_hf_model
    from tests.atlas.conftest import build, corpus_lines
    from tests.tiny_models import make_models

    model, _ = make_models("gemma2")
    with torch.no_grad():
        model.model.layers[LAYER].mlp.up_proj.weight[BAD] = float("nan")
    lm = wrap_hf_model(model, tiny_tokenizer, name="tiny-gemma2", dtype="fp32")
    root = tmp_path_factory.mktemp("nan-atlas")
    corpus = root / "corpus.txt"
    corpus.write_text("\n".join(corpus_lines(12)) + "\n")
    return Path(build(lm, root / "A", corpus, layers=[LAYER], write_scores_k=0))


def test_the_count_and_nan_moments(nan_atlas: Path) -> None:
    atlas = open_atlas(nan_atlas)
    bad, good = atlas.neuron(LAYER, BAD).stats, atlas.neuron(LAYER, GOOD).stats
    assert bad.nonfinite == bad.count > 0
    assert all(math.isnan(v) for v in (bad.mean, bad.std, bad.skewness, bad.kurtosis))
    assert good.nonfinite == 0
    assert all(math.isfinite(v) for v in (good.mean, good.std))


def test_cli_page_shows_the_count(nan_atlas: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli(capsys, "neuron", "--atlas", str(nan_atlas), f"L{LAYER}/N{BAD}")
    assert code == 0
    count = open_atlas(nan_atlas).neuron(LAYER, BAD).stats.count
    assert f"non-finite {count} (moments NaN)" in out
    code, out, _ = run_cli(capsys, "neuron", "--atlas", str(nan_atlas), f"L{LAYER}/N{GOOD}")
    assert code == 0 and "non-finite" not in out


def test_terminal_header_shows_the_count(nan_atlas: Path) -> None:
    from neuron_signatures.tui.atlas_state import AtlasState
    from neuron_signatures.tui.widgets.atlas_header import atlas_header_lines

    atlas = open_atlas(nan_atlas)
    for index, expect in ((BAD, atlas.neuron(LAYER, BAD).stats.count), (GOOD, None)):
        state = AtlasState(atlas, layer=LAYER, neuron=index)
        text = "\n".join(atlas_header_lines(state, state.record()))
        assert (f"non-finite {expect}" in text) if expect else ("non-finite" not in text)


def test_web_page_shows_the_count(nan_atlas: Path) -> None:
    from streamlit import config

    from neuron_signatures.web import APP_SCRIPT

    count = open_atlas(nan_atlas).neuron(LAYER, BAD).stats.count
    at = AppTest.from_file(str(APP_SCRIPT), default_timeout=60)
    at.query_params.update(atlas=str(nan_atlas), layer=str(LAYER), neuron=str(BAD))
    before = config.get_option("server.address")
    config.set_option("server.address", "localhost")  # any folder opens
    try:
        at.run()
    finally:
        config.set_option("server.address", before)
    assert not at.exception, [e.value for e in at.exception]
    seen = next(m for m in at.metric if m.label == "tokens seen")
    assert seen.value == f"{count:,}"
    assert f"{count:,} non-finite" in str(seen.proto.delta)
