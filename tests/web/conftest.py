"""Fixtures of the web app tests: hand-built runs with and without analysis files."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.web.fixtures import make_run


@pytest.fixture(scope="session")
def web_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Run with peaks, influence, write scores and signatures (do not modify)."""
    return make_run(tmp_path_factory.mktemp("web") / "full")


@pytest.fixture(scope="session")
def peaks_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_run(tmp_path_factory.mktemp("web") / "peaks", analysis="peaks")


@pytest.fixture(scope="session")
def bare_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_run(tmp_path_factory.mktemp("web") / "bare", analysis="none")
