"""One local Ray (2 CPUs, listening on 127.0.0.1 only) shared by the Ray tests; the tiny model
is a saved folder so that every worker loads the same weights by name."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.atlas.conftest import corpus_txt  # noqa: F401  (a session fixture)


@pytest.fixture(scope="session")
def ray_local() -> Iterator[Any]:
    ray = pytest.importorskip("ray")
    from neuron_signatures.scale.cluster import start_local_ray

    if not ray.is_initialized():
        start_local_ray(ray, num_cpus=2)  # the product's own start: loopback only
    yield ray
    ray.shutdown()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The ``cluster`` tests (minutes: each starts Ray nodes) run only when asked for with
    ``-m cluster`` (``make test-cluster``), never in the default suite."""
    expr = config.getoption("markexpr") or ""
    if "cluster" in expr and "not cluster" not in expr:
        return
    skip = pytest.mark.skip(reason="a Ray cluster test: run with -m cluster (make test-cluster)")
    for item in items:
        if "cluster" in item.keywords:
            item.add_marker(skip)
