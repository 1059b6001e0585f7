"""Fixtures of the web app tests: hand-built runs with and without analysis files, and a real atlas
of the tiny model."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.web.fixtures import make_atlas, make_run


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


@pytest.fixture(autouse=True)
def server_address() -> Iterator[Callable[[str | None], None]]:
    """Streamlit's ``server.address`` seen by the page under ``AppTest``: ``localhost`` (any folder
    opens) unless a test calls the fixture with another address; restored afterwards."""
    from streamlit import config

    before = config.get_option("server.address")

    def set_address(address: str | None) -> None:
        config.set_option("server.address", address)

    set_address("localhost")
    yield set_address
    set_address(before)


@pytest.fixture(scope="session")
def web_atlas(atlas_lm: Any, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real atlas of the tiny model over a small corpus (do not modify); its vocabulary shows
    the token ``Illinois`` as ``<script>Illinois``, to check escaping."""
    return make_atlas(atlas_lm, tmp_path_factory.mktemp("atlas") / "A")
