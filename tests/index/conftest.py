"""Index fixtures: the planted model's explained atlas (from the explain tests' recipe) and a
hand-made neuron table."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest

from tests.explain.conftest import explain_corpus, explained, planted_atlas, planted_lm

__all__ = ["explain_corpus", "explained", "planted_atlas", "planted_lm"]

# (layer, neuron, side, explanation, score, floor, density, max): hand-made rows with known text
HAND: list[tuple[int, int, str | None, str | None, float | None, float | None, float, float]] = [
    (0, 0, "positive", 'fires on "Austin" (9.1, 14×), "Texas" (7.4, 9×)', 0.95, 0.02, 0.01, 9.1),
    (0, 0, "negative", 'goes negative on "the" (-0.2, 40×)', 0.10, 0.05, 0.01, 9.1),
    (0, 1, "positive", 'fires on "capital" (3.0, 4×) · in: "city of ▁"', 0.55, 0.01, 0.20, 3.0),
    (1, 0, "positive", 'fires on "capital" (2.0, 4×), "city" (1.0, 2×)', 0.42, -0.03, 0.35, 2.0),
    (1, 1, "negative", 'goes negative on "AND" (-2.0, 3×), "*" (-1.0, 2×)', 0.30, 0.0, 0.05, 1.0),
    (1, 2, "positive", 'fires on "(" (1.0, 2×), "-" (0.5, 2×) · "quote"', None, None, 0.50, 0.5),
    (2, 0, None, None, None, None, 0.90, 5.0),
    (2, 1, "positive", 'fires on "Paris" (4.0, 3×) · capital city', 0.61, 0.12, 0.02, 4.0),
]


def hand_rows() -> list[tuple[Any, ...]]:
    """:data:`HAND` as table rows (:data:`neuron_signatures.index.table.NAMES` order)."""
    out = []
    for layer, n, side, text, score, floor, density, mx in HAND:
        stats = (100, 0.1, 0.2, -1.0, mx, density, density / 2)
        expl = ("token-lookup" if text else None, text, score, None, floor, None, 7, 50)
        out.append((layer, n, side, *stats, *expl))
    return out


@pytest.fixture(scope="session")
def hand_index(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """The :class:`IndexInfo` of a table of :data:`HAND` rows."""
    from neuron_signatures.index import SCHEMA_VERSION, read_info, write_table

    path = tmp_path_factory.mktemp("hand") / "index.sqlite"
    meta = {
        "schema_version": SCHEMA_VERSION,
        "key": "hand",
        "model": "none",
        "layers": [0, 1, 2],
        "d_mlp": 3,
        "has_explanations": True,
        "explained_layers": [0, 1, 2],
    }
    write_table(path, hand_rows(), meta)
    info = read_info(path)
    assert info is not None
    return info


@pytest.fixture()
def atlas_copy(explained: Path, tmp_path: Path) -> Path:
    """A private copy of the explained atlas (tests that rebuild or break the index)."""
    root = tmp_path / "A"
    shutil.copytree(explained, root)
    return root
