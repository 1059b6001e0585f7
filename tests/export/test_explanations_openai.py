"""OpenAI NeuronSimulationResults export of explanations: OpenAI's own loader reads it back, every
value equals the explanations records and the simulator, and the bytes are deterministic."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from neuron_signatures.atlas import open_atlas
from neuron_signatures.cli import main
from neuron_signatures.errors import RunFormatError
from neuron_signatures.explain.lookup import simulate
from neuron_signatures.explain.output import read_explanations, read_tables
from neuron_signatures.explain.scoring import correlation_score
from neuron_signatures.export.explanation_rows import SCORES_FILE
from neuron_signatures.export.explanations_openai import (
    INFO_FILE,
    explanation_path,
    export_explanations_openai,
)
from tests.explain.conftest import PLANTED_LAYER, PLANTED_NEURON


@pytest.fixture(scope="module")
def records(explained: Path) -> dict[tuple[int, int], dict[str, Any]]:
    _, recs = read_explanations(explained)
    return {(r["layer"], r["neuron"]): r for r in recs}


@pytest.fixture(scope="module")
def exported(explained: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    atlas = open_atlas(explained)
    out = tmp_path_factory.mktemp("oai") / "E"
    neurons = [(la, n) for la in atlas.layers for n in range(atlas.d_mlp)]
    calls: list[int] = []
    assert export_explanations_openai(atlas, neurons, out, progress=calls.append) == out
    assert sum(calls) == len(neurons)
    return out


def test_openai_loader_reads_every_file_and_dumps_the_same_bytes(
    exported: Path, records: dict[tuple[int, int], dict[str, Any]]
) -> None:
    ex = pytest.importorskip("neuron_explainer.explanations.explanations")
    fdc = pytest.importorskip("neuron_explainer.fast_dataclasses")
    explained_keys = {k for k, r in records.items() if r["sides"]}
    files = sorted(exported.glob("*/*.jsonl"))
    assert {(int(p.parent.name), int(p.stem)) for p in files} == explained_keys
    for path in files:
        raw = path.read_bytes()
        assert raw.endswith(b"\n") and raw.count(b"\n") == 1  # one object on the first line
        obj = fdc.loads(raw)
        assert isinstance(obj, ex.NeuronSimulationResults)
        assert fdc.dumps(obj) == raw[:-1]  # their dumps of their object: our bytes
        assert b"NaN" not in raw and b"Infinity" not in raw
        layer, neuron = int(path.parent.name), int(path.stem)
        assert (obj.neuron_id.layer_index, obj.neuron_id.neuron_index) == (layer, neuron)
        for se in obj.scored_explanations:
            assert isinstance(se, ex.ScoredExplanation)
            assert isinstance(se.scored_simulation, ex.ScoredSimulation)
            for sss in se.scored_simulation.scored_sequence_simulations:
                assert isinstance(sss, ex.ScoredSequenceSimulation)
                assert isinstance(sss.simulation, ex.SequenceSimulation)
    # OpenAI's own file loader finds a neuron by layer and index
    got = ex.load_neuron_explanations(str(exported), PLANTED_LAYER, PLANTED_NEURON)
    assert isinstance(got, ex.NeuronSimulationResults)
    assert ex.load_neuron_explanations(str(exported), PLANTED_LAYER, 10_000) is None


def test_values_equal_the_records_and_the_simulator(
    explained: Path, exported: Path, records: dict[tuple[int, int], dict[str, Any]]
) -> None:
    atlas = open_atlas(explained)
    tables = {la: read_tables(explained, la) for la in atlas.layers}
    checked_sequences = 0
    for (layer, neuron), rec in records.items():
        if not rec["sides"]:
            continue
        obj = json.loads(explanation_path(exported, layer, neuron).read_text())
        sides = obj["scored_explanations"]
        assert [s["explanation"] for s in sides] == [s["explanation"] for s in rec["sides"]]
        for got, side in zip(sides, rec["sides"], strict=True):
            sim = got["scored_simulation"]
            assert sim["ev_correlation_score"] == side["scores"]["top_and_random"]
            sign = 1.0 if side["side"] == "positive" else -1.0
            examples = (
                atlas.neuron(layer, neuron).top if sign > 0 else atlas.neuron(layer, neuron).bottom
            )
            windows = list(dict.fromkeys(e.window for e in examples))
            wanted = [w for w in windows if w in side["heldout"]["example_windows"]]
            seqs = sim["scored_sequence_simulations"]
            assert len(seqs) == len(wanted)
            table = tables[layer][side["side"]].take(np.array([neuron]))
            for seq, w in zip(seqs, wanted, strict=True):
                e = next(e for e in examples if e.window == w)
                assert e.acts is not None
                predicted = simulate(table, np.array(e.token_ids))[0][1:]
                true = sign * np.array(e.acts[1 : len(e.token_ids)], np.float64)
                assert seq["simulation"]["tokens"] == [
                    t.replace("\u2581", " ") for t in e.tokens[1:]
                ]
                assert seq["simulation"]["expected_activations"] == predicted.tolist()
                assert seq["simulation"]["activation_scale"] == "neuron_activations"
                assert seq["true_activations"] == true.tolist()
                r = correlation_score(true, predicted)
                assert seq["ev_correlation_score"] == (None if math.isnan(r) else r)
                checked_sequences += 1
    assert checked_sequences > 0
    # the planted detector: its explanation names the token and its held-out windows predict well
    planted = json.loads(explanation_path(exported, PLANTED_LAYER, PLANTED_NEURON).read_text())
    top = planted["scored_explanations"][0]
    assert (
        "Austin" in top["explanation"] and top["scored_simulation"]["ev_correlation_score"] >= 0.9
    )


def test_scores_side_file_holds_floors_and_both_scores(
    exported: Path, records: dict[tuple[int, int], dict[str, Any]]
) -> None:
    rows = [json.loads(line) for line in (exported / SCORES_FILE).read_text().splitlines()]
    want = [(k, s) for k, r in sorted(records.items()) for s in r["sides"]]
    assert len(rows) == len(want)
    for row, ((layer, neuron), side) in zip(rows, want, strict=True):
        assert (row["layer"], row["neuron"], row["side"]) == (layer, neuron, side["side"])
        assert row["scores"] == side["scores"] and row["floor"] == side["floor"]
        assert row["explanation"] == side["explanation"]
        assert row["heldout_tokens"]["top_and_random"] == side["heldout"]["tokens_top_and_random"]
    info = json.loads((exported / INFO_FILE).read_text())
    assert info["layout"] == "{layer}/{neuron}.jsonl" and info["n_neurons"] == len(
        {(r["layer"], r["neuron"]) for r in rows}
    )


def test_same_bytes_twice_through_the_cli(explained: Path, tmp_path: Path) -> None:
    def run(name: str) -> dict[str, bytes]:
        out = tmp_path / name
        argv = ["export", "--atlas", str(explained), "--format", "explanations_openai"]
        assert main([*argv, "--out_dir", str(out), "--no_progress"]) == 0
        return {
            str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()
        }

    first = run("a")
    assert first == run("b") and INFO_FILE in first
    # --overwrite replaces an export of this format (and nothing else is there)
    argv = ["export", "--atlas", str(explained), "--format", "explanations_openai"]
    assert main([*argv, "--out_dir", str(tmp_path / "a"), "--overwrite", "--no_progress"]) == 0


def test_an_atlas_without_explanations_fails_in_one_line(
    planted_atlas: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    atlas = open_atlas(planted_atlas)
    with pytest.raises(RunFormatError, match="neuron-signatures explain"):
        export_explanations_openai(atlas, [(0, 1)], tmp_path / "x")
    out = tmp_path / "cli"
    argv = ["export", "--atlas", str(planted_atlas), "--format", "explanations_openai"]
    assert main([*argv, "--out_dir", str(out), "--no_progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert "explain" in err and "\n" not in err and "Traceback" not in err
    assert not out.exists() or not any(out.iterdir())  # nothing half-written


def _add_llm_folder(atlas: Path) -> None:
    """An ``explanations-llm`` folder in the offline one's layout (as the LLM explainer writes
    it): its manifest names the model; each side is an LLM side with its own text and scores."""
    src, dst = atlas / "explanations", atlas / "explanations-llm"
    (dst / "layers").mkdir(parents=True)
    m = json.loads((src / "explanations.json").read_text())
    m["params"]["explainer"] = {"name": "llm", "model": "my-model"}
    (dst / "explanations.json").write_text(json.dumps(m))
    for f in (src / "layers").glob("*.jsonl"):
        lines = []
        for line in f.read_text().splitlines():
            rec = json.loads(line)
            for side in rec["sides"]:
                side.update(explainer="llm", explanation=f"llm: {side['side']} {rec['neuron']}")
                side["scores"] = {"top_and_random": 0.5, "random_only": 0.25}
                side["classifiers"] = {
                    "detection": {
                        "balanced_accuracy": 0.75, "auc": 0.8, "method": "logprobs",
                        "n_invalid": 0, "windows": {"activating": [1], "non_activating": [2]},
                        "floor": {"from_neuron": 3, "balanced_accuracy": 0.5, "auc": 0.5},
                        "n_windows": {"activating": 1, "non_activating": 1},
                    }
                }  # fmt: skip
            lines.append(json.dumps(rec))
        (dst / "layers" / f.name).write_text("\n".join(lines) + "\n")


def test_llm_explanations_are_exported_beside_the_offline_ones(
    explained: Path, tmp_path: Path, records: dict[tuple[int, int], dict[str, Any]]
) -> None:
    from neuron_signatures.export.neuronpedia import export_neuronpedia
    from tests.export.test_neuronpedia import read_jsonl

    atlas_dir = tmp_path / "A"
    shutil.copytree(explained, atlas_dir)
    _add_llm_folder(atlas_dir)
    atlas = open_atlas(atlas_dir)
    key = (PLANTED_LAYER, PLANTED_NEURON)
    n_offline = len(records[key]["sides"])
    out = export_explanations_openai(atlas, [key], tmp_path / "oai")
    sides = json.loads(explanation_path(out, *key).read_text())["scored_explanations"]
    assert len(sides) == 2 * n_offline
    assert [s["explanation"] for s in sides[:n_offline]] == [
        s["explanation"] for s in records[key]["sides"]
    ]
    llm = sides[n_offline]
    assert llm["explanation"] == f"llm: positive {PLANTED_NEURON}"
    assert llm["scored_simulation"]["ev_correlation_score"] == 0.5
    assert llm["scored_simulation"]["scored_sequence_simulations"] == []  # not replayable
    scores = [json.loads(x) for x in (out / SCORES_FILE).read_text().splitlines()]
    assert [s["explanation_model"] for s in scores] == ["token-lookup"] * n_offline + [
        "my-model"
    ] * n_offline
    det = scores[n_offline]["classifiers"]["detection"]
    assert det["balanced_accuracy"] == 0.75 and det["auc"] == 0.8
    assert det["floor"]["balanced_accuracy"] == 0.5 and "windows" not in det
    assert "classifiers" not in scores[0]  # the offline side has none
    model_dir = export_neuronpedia(atlas, [key], tmp_path / "np")
    rows = read_jsonl(model_dir / str(PLANTED_LAYER) / "explanations" / "batch-0.jsonl.gz")
    assert [r["explanationModelName"] for r in rows] == ["token-lookup"] * n_offline + [
        "my-model"
    ] * n_offline
    assert rows[n_offline]["typeName"] == "neuron-signatures-llm"
    assert len({r["id"] for r in rows}) == len(rows)
    names = {
        r["name"]
        for r in read_jsonl(model_dir / str(PLANTED_LAYER) / "explanation_model_type.jsonl")
    }
    assert names == {"token-lookup", "my-model"}
