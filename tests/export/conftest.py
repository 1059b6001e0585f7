"""Fixtures of the export tests: one small real atlas of the tiny model, built once per session."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.explain.conftest import (  # noqa: F401  (the explained atlas of test_explanations_*)
    explain_corpus,
    explained,
    planted_atlas,
    planted_lm,
)
from tests.web.fixtures import make_atlas


@pytest.fixture(scope="session")
def export_atlas(atlas_lm: Any, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real atlas of the tiny model (layers 0-2) over a small corpus; do not modify it."""
    return make_atlas(atlas_lm, tmp_path_factory.mktemp("export") / "A")
