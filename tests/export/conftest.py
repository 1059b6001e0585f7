"""Fixtures of the export tests: one small real atlas of the tiny model, built once per session."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.web.fixtures import make_atlas


@pytest.fixture(scope="session")
def export_lm(tiny_tokenizer: Any) -> Any:
    """The tiny random Gemma 2 model the export atlas is built with."""
    from neuron_signatures.models import wrap_hf_model
    from tests.tiny_models import make_models

    model, _ = make_models("gemma2")
    return wrap_hf_model(model, tiny_tokenizer, name="tiny-gemma2", dtype="fp32")


@pytest.fixture(scope="session")
def export_atlas(export_lm: Any, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real atlas of the tiny model (layers 0-2) over a small corpus; do not modify it."""
    return make_atlas(export_lm, tmp_path_factory.mktemp("export") / "A")
