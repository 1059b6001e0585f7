"""One local Ray (2 CPUs) shared by the Ray tests; the tiny model is a saved folder so that
every worker loads the same weights by name."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import pytest

from tests.atlas.conftest import corpus_txt  # noqa: F401  (a session fixture)


@pytest.fixture(scope="session")
def ray_local() -> Iterator[Any]:
    ray = pytest.importorskip("ray")
    if not ray.is_initialized():
        ray.init(
            num_cpus=2,
            include_dashboard=False,
            object_store_memory=128 * 2**20,
            logging_level=logging.WARNING,
            log_to_driver=False,
        )
    yield ray
    ray.shutdown()
