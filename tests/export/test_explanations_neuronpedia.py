"""Neuronpedia export of an explained atlas: ``explanations/batch-N.jsonl.gz`` rows hold exactly the
``Explanation`` columns of Neuronpedia's schema, their values are the explanations records, the
type rows they name are there, scores are in the side file, and the bytes are deterministic."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from neuron_signatures.atlas import open_atlas
from neuron_signatures.cli import main
from neuron_signatures.explain.output import read_explanations
from neuron_signatures.export.explanation_rows import SCORES_FILE
from neuron_signatures.export.neuronpedia import export_neuronpedia
from neuron_signatures.export.neuronpedia_explanations import MODEL_TYPE_FILE, TYPE_FILE
from neuron_signatures.export.neuronpedia_rows import CREATOR_ID
from tests.explain.conftest import PLANTED_LAYER, PLANTED_NEURON
from tests.export import neuronpedia_schema as S
from tests.export.test_neuronpedia import read_jsonl

BATCH = 10


@pytest.fixture(scope="module")
def records(explained: Path) -> dict[tuple[int, int], dict[str, Any]]:
    _, recs = read_explanations(explained)
    return {(r["layer"], r["neuron"]): r for r in recs}


@pytest.fixture(scope="module")
def model_dir(explained: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    atlas = open_atlas(explained)
    neurons = [(la, n) for la in atlas.layers for n in range(atlas.d_mlp)]
    return export_neuronpedia(atlas, neurons, tmp_path_factory.mktemp("np"), batch_size=BATCH)


def test_explanation_rows_have_exactly_the_schema_fields(model_dir: Path) -> None:
    n_rows = 0
    for source in sorted(model_dir.iterdir()):
        folder = source / S.EXPLANATION_DIR
        names = sorted(p.name for p in folder.iterdir())
        assert names == sorted(p.name for p in (source / "features").iterdir())  # same batches
        for f in folder.iterdir():
            for row in read_jsonl(f):
                assert S.validate(row, S.EXPLANATION) == [], (f, row)
                n_rows += 1
        for name, schema in S.CONFIG_FILES.items():
            for row in read_jsonl(source / name):
                assert S.validate(row, schema) == [], (name, row)
    assert n_rows > 0


def test_values_equal_the_records(
    model_dir: Path, records: dict[tuple[int, int], dict[str, Any]]
) -> None:
    mid = model_dir.name
    for source in sorted(model_dir.iterdir(), key=lambda p: int(p.name)):
        layer = int(source.name)
        want = [
            (n, side)
            for (la, n), r in sorted(records.items())
            if la == layer
            for side in r["sides"]
        ]
        rows = []
        for b in range(len(list((source / S.EXPLANATION_DIR).iterdir()))):
            batch = read_jsonl(source / S.EXPLANATION_DIR / f"batch-{b}.jsonl.gz")
            # batch b holds the explanations of exactly the neurons of features batch b
            feats = {r["index"] for r in read_jsonl(source / "features" / f"batch-{b}.jsonl.gz")}
            assert {r["index"] for r in batch} <= feats
            rows += batch
        assert len(rows) == len(want)
        types = {r["name"] for r in read_jsonl(source / TYPE_FILE)}
        models = {r["name"] for r in read_jsonl(source / MODEL_TYPE_FILE)}
        for row, (n, side) in zip(rows, want, strict=True):
            assert (row["modelId"], row["layer"], row["index"]) == (mid, str(layer), str(n))
            assert row["description"] == side["explanation"] and row["authorId"] == CREATOR_ID
            assert row["typeName"] == "neuron-signatures-token-lookup" in types
            assert row["explanationModelName"] == "token-lookup" in models
            assert row["notes"].startswith(side["side"])
        assert len({r["id"] for r in rows}) == len(rows)  # one id per neuron and side
        scores = read_jsonl(source / SCORES_FILE)
        assert [(s["neuron"], s["side"]) for s in scores] == [(n, s["side"]) for n, s in want]
        for s, (_, side) in zip(scores, want, strict=True):
            assert s["scores"] == side["scores"] and s["floor"] == side["floor"]


def test_the_planted_detector_is_exported_with_its_score(model_dir: Path) -> None:
    source = model_dir / str(PLANTED_LAYER)
    rows = [
        r
        for f in sorted((source / S.EXPLANATION_DIR).iterdir())
        for r in read_jsonl(f)
        if r["index"] == str(PLANTED_NEURON)
    ]
    assert rows and "Austin" in rows[0]["description"]
    score = next(s for s in read_jsonl(source / SCORES_FILE) if s["neuron"] == PLANTED_NEURON)
    assert score["scores"]["top_and_random"] >= 0.9


def test_same_bytes_twice_and_overwrite_through_the_cli(explained: Path, tmp_path: Path) -> None:
    def run(name: str, *extra: str) -> dict[str, bytes]:
        out = tmp_path / name
        argv = ["export", "--atlas", str(explained), "--format", "neuronpedia", "--layers", "0"]
        assert main([*argv, "--out_dir", str(out), "--no_progress", *extra]) == 0
        return {
            str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()
        }

    first = run("a")
    assert any("explanations/batch-0.jsonl.gz" in k for k in first)
    assert any(k.endswith(SCORES_FILE) for k in first)
    assert first == run("b")
    assert run("a", "--overwrite") == first  # a previous export with explanations is replaced


def test_an_atlas_without_explanations_writes_none(planted_atlas: Path, tmp_path: Path) -> None:
    model_dir = export_neuronpedia(open_atlas(planted_atlas), [(0, 1)], tmp_path)
    names = {p.name for p in (model_dir / "0").iterdir()}
    assert S.EXPLANATION_DIR not in names and SCORES_FILE not in names and TYPE_FILE not in names
