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


# (layer, neuron, side, explanation, score, floor, detection, floor_detection, fuzzing): LLM rows
# (model "tiny-llm") beside :data:`HAND`'s, for the mixed table
HAND_LLM: list[tuple[int, int, str, str, float | None, float | None, Any, Any, Any]] = [
    (0, 0, "positive", "the word Austin, the capital of Texas", 0.90, 0.1, 0.85, 0.5, 0.80),
    (1, 0, "positive", "capital cities in a list", 0.30, 0.0, 0.70, 0.48, None),
    (2, 0, "negative", "closing brackets", None, None, 0.95, 0.52, 0.90),
]


def hand_rows(llm: bool = False) -> list[tuple[Any, ...]]:
    """:data:`HAND` as table rows (:data:`neuron_signatures.index.table.NAMES` order); ``llm``:
    with :data:`HAND_LLM`'s rows after the offline ones of their neuron (as a build adds them);
    the neuron without offline explanation (L2/N0) then has only its LLM row."""
    by_neuron: dict[tuple[int, int], list[tuple[Any, ...]]] = {}
    stats_of: dict[tuple[int, int], tuple[Any, ...]] = {}
    for layer, n, side, text, score, floor, density, mx in HAND:
        stats = (100, 0.1, 0.2, -1.0, mx, density, density / 2)
        stats_of[(layer, n)] = stats
        expl = ("token-lookup" if text else None, text, score, None, floor, None, 7, 50)
        by_neuron.setdefault((layer, n), []).append((layer, n, side, *stats, *expl, *[None] * 5))
    for la, ne, sd, tx, sc, fl, det, fdet, fuzz in HAND_LLM if llm else []:
        rows = [r for r in by_neuron[(la, ne)] if r[2] is not None]  # drop a blank row
        cols = ("llm", tx, sc, None, fl, None, 3, 40, "tiny-llm", det, fdet, fuzz, 0.5)
        by_neuron[(la, ne)] = [*rows, (la, ne, sd, *stats_of[(la, ne)], *cols)]
    return [r for rows in by_neuron.values() for r in rows]


def _write(
    path: Path,
    rows: list[tuple[Any, ...]],
    explainers: list[str],
    layers: list[int] | None = None,
    **kw: Any,
) -> Any:
    """Write ``rows`` as an index (``kw`` to :func:`write_table`); its info, checked."""
    from neuron_signatures.index import SCHEMA_VERSION, read_info, write_table

    layers = [0, 1, 2] if layers is None else layers
    meta = {
        "schema_version": SCHEMA_VERSION,
        "key": "hand",
        "model": "none",
        "layers": layers,
        "d_mlp": 3,
        "has_explanations": True,
        "explained_layers": layers,
    }
    write_table(path, rows, meta, **kw)
    info = read_info(path)
    assert info is not None and list(info.explainers) == explainers
    return info


@pytest.fixture(scope="session")
def mixed_index(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """The :class:`IndexInfo` of :data:`HAND` and :data:`HAND_LLM` rows together."""
    path = tmp_path_factory.mktemp("mixed") / "index.sqlite"
    return _write(path, hand_rows(llm=True), ["llm", "token-lookup"])


@pytest.fixture(scope="session")
def hand_index(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """The :class:`IndexInfo` of a table of :data:`HAND` rows."""
    return _write(tmp_path_factory.mktemp("hand") / "index.sqlite", hand_rows(), ["token-lookup"])


@pytest.fixture()
def atlas_copy(explained: Path, tmp_path: Path) -> Path:
    """A private copy of the explained atlas (tests that rebuild or break the index)."""
    root = tmp_path / "A"
    shutil.copytree(explained, root)
    return root


def write_explanations(
    root: Path, folder: str, records: list[dict[str, Any]], model: str | None = None
) -> None:
    """A hand-made ``<root>/<folder>`` (``explanations`` or ``explanations-llm``) holding
    ``records`` (one per neuron, sorted), in the explain output's layout: manifest + layer files.
    ``model``: the LLM's, in the manifest's explainer params."""
    import json

    from neuron_signatures.explain import llm_output
    from neuron_signatures.explain.output import FORMAT, FORMAT_VERSION, layer_path, write_json

    out = root / folder
    layers = sorted({int(r["layer"]) for r in records})
    explainer: dict[str, Any] = {"name": "llm" if model else "token-lookup"}
    if model:
        explainer.update(model=model, record_version=getattr(llm_output, "RECORD_VERSION", 1))
    write_json(
        out / "explanations.json",
        {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "params": {"layers": layers, "explainer": explainer},
            "complete": True,
        },
    )
    for layer in layers:
        mine = [r for r in records if r["layer"] == layer]
        path = layer_path(out, layer)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("".join(json.dumps(r) + "\n" for r in mine))


def side(
    name: str, explainer: str, text: str, score: float | None, **classifiers: float
) -> dict[str, Any]:
    """One side of an explanation record; ``classifiers``: detection/fuzzing balanced
    accuracies (LLM records, version 2 layout, floor 0.5)."""
    out: dict[str, Any] = {
        "side": name,
        "explainer": explainer,
        "explanation": text,
        "scores": {"top_and_random": score, "random_only": score},
        "floor": {"from_neuron": 0, "top_and_random": 0.01, "random_only": 0.0},
        "heldout": {"tokens_top_and_random": 100, "tokens_random_only": 60},
    }
    if classifiers:
        out["classifiers"] = {
            k: {"balanced_accuracy": v, "auc": None, "floor": {"balanced_accuracy": 0.5}}
            for k, v in classifiers.items()
        }
    return out


LLM_MODEL = "fake-llm"


def hand_explain(root: Path) -> None:
    """Hand-made offline and LLM explanations of an atlas (no explainer run): every neuron
    ``fires on "tokN"`` (score N/d) but the planted one (``"Austin"``, 0.97); the LLM explains
    the planted neuron (0.93, detection 0.9, fuzzing 0.85) and neuron 1 (0.2) of layer
    ``PLANTED_LAYER``, and fails on neuron 2 (an error record)."""
    from neuron_signatures.atlas import open_atlas
    from tests.explain.conftest import PLANTED_LAYER, PLANTED_NEURON, PLANTED_WORD

    atlas = open_atlas(root)
    d = atlas.d_mlp
    offline = []
    for layer in atlas.layers:
        for n in range(d):
            planted = (layer, n) == (PLANTED_LAYER, PLANTED_NEURON)
            text = f'fires on "{PLANTED_WORD}" (9.1, 14×)' if planted else f'fires on "tok{n}"'
            sides = [side("positive", "token-lookup", text, 0.97 if planted else n / d)]
            offline.append({"layer": layer, "neuron": n, "sides": sides})
    write_explanations(root, "explanations", offline)
    llm = [
        {"layer": PLANTED_LAYER, "neuron": n, "sides": []}
        for n in range(d)
        if n not in (1, 2, PLANTED_NEURON)
    ]
    llm += [
        {
            "layer": PLANTED_LAYER,
            "neuron": PLANTED_NEURON,
            "sides": [
                side(
                    "positive",
                    "llm",
                    f'the token "{PLANTED_WORD}"',
                    0.93,
                    detection=0.9,
                    fuzzing=0.85,
                )
            ],
        },
        {
            "layer": PLANTED_LAYER,
            "neuron": 1,
            "sides": [
                side("positive", "llm", f"city names such as {PLANTED_WORD}", 0.2, detection=0.6)
            ],
        },
        {"layer": PLANTED_LAYER, "neuron": 2, "sides": [], "error": "simulator: garbage"},
    ]
    llm.sort(key=lambda r: r["neuron"])
    write_explanations(root, "explanations-llm", llm, model=LLM_MODEL)


@pytest.fixture(scope="session")
def mixed_atlas(planted_atlas: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The planted atlas with :func:`hand_explain`'s explanations (read-only: copy it to
    change it)."""
    root = tmp_path_factory.mktemp("mixed_atlas") / "A"
    shutil.copytree(planted_atlas, root)
    hand_explain(root)
    return root
