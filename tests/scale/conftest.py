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
