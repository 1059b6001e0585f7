"""The Neuronpedia export: every file against a transcription of Neuronpedia's schema and layout,
and every value against ``atlas.neuron(l, n)``."""

from __future__ import annotations

import gzip
import json
import math
from pathlib import Path
from typing import Any

import pytest

from neuron_signatures.atlas import Atlas, open_atlas
from neuron_signatures.errors import BadArgumentError
from neuron_signatures.export.neuronpedia import export_neuronpedia, model_slug
from tests.export import neuronpedia_schema as S

LAYER_1 = [(1, n) for n in range(64)]
PICKED = [(0, 5), (0, 63), (2, 0), (0, 5)]  # one duplicate: exported once


@pytest.fixture(scope="module")
def atlas(export_atlas: Path) -> Atlas:
    return open_atlas(export_atlas)


@pytest.fixture(scope="module")
def exported(atlas: Atlas, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[int]]:
    """Layer 1 whole and three neurons of layers 0 and 2, in batches of 10; the progress calls."""
    calls: list[int] = []
    out = tmp_path_factory.mktemp("np")
    model_dir = export_neuronpedia(
        atlas, LAYER_1 + PICKED, out, batch_size=10, progress=calls.append
    )
    return model_dir, calls


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """Rows of a ``.jsonl`` or ``.jsonl.gz`` file (the whole gzip stream must decode)."""
    raw = path.read_bytes()
    text = (gzip.decompress(raw) if path.suffix == ".gz" else raw).decode("utf-8")
    assert text.endswith("\n")
    return [json.loads(line) for line in text.splitlines()]


def read_source(folder: Path) -> dict[str, list[dict[str, Any]]]:
    """Every table of one source folder, batches in number order."""
    tables = {name: read_jsonl(folder / name) for name in S.METADATA_FILES}
    for sub in S.BATCH_DIRS:
        files = sorted((folder / sub).iterdir(), key=lambda p: int(S.BATCH_RE.match(p.name)[1]))  # type: ignore[index]
        tables[sub] = [row for f in files for row in read_jsonl(f)]
    return tables


def test_layout_and_schema(exported: tuple[Path, list[int]]) -> None:
    """Only Neuronpedia's file names, and every row of every file imports as is."""
    model_dir, _ = exported
    assert model_dir.name == "tiny-gemma2"
    assert sorted(p.name for p in model_dir.iterdir()) == ["0", "1", "2"]  # no leftovers
    for source in model_dir.iterdir():
        assert S.NEURON_SOURCE_RE.match(source.name)
        assert sorted(p.name for p in source.iterdir()) == sorted(
            [*S.METADATA_FILES, *S.BATCH_DIRS]
        )
        for name, schema in S.METADATA_FILES.items():
            rows = read_jsonl(source / name)
            assert len(rows) == 1 and S.validate(rows[0], schema) == [], (name, rows)
        for sub, schema in S.BATCH_DIRS.items():
            numbers = sorted(int(S.BATCH_RE.match(p.name)[1]) for p in (source / sub).iterdir())  # type: ignore[index]
            assert numbers == list(range(len(numbers)))  # batch-0, batch-1, ... no gaps
            for f in (source / sub).iterdir():
                for row in read_jsonl(f):
                    assert S.validate(row, schema) == [], (f, row)


def test_rows_reference_each_other(exported: tuple[Path, list[int]], atlas: Atlas) -> None:
    """The foreign keys hold: activation -> neuron -> source -> source set -> model."""
    model_dir, _ = exported
    for folder in model_dir.iterdir():
        t = read_source(folder)
        (model,), (sset,), (source,) = t["model.jsonl"], t["sourceset.jsonl"], t["source.jsonl"]
        assert model["id"] == model_dir.name and source["id"] == folder.name
        assert (model["layers"], model["neuronsPerLayer"]) == (atlas.n_layers, atlas.d_mlp)
        assert sset["name"] == source["setName"] == S.NEURONS_SOURCESET
        assert sset["modelId"] == source["modelId"] == model["id"]
        keys = {(r["modelId"], r["layer"], r["index"]) for r in t["features"]}
        for r in t["features"]:
            assert (r["modelId"], r["layer"], r["sourceSetName"]) == (
                model["id"], folder.name, S.NEURONS_SOURCESET
            )  # fmt: skip
            assert r["hookName"] == f"blocks.{folder.name}.mlp.hook_post"
        assert {(r["modelId"], r["layer"], r["index"]) for r in t["activations"]} == keys
        ids = [r["id"] for r in t["activations"]]
        assert len(ids) == len(set(ids))  # primary key
        assert source["num_tokens_in_prompt"] == atlas.ctx_len and source["dataset"]


def test_round_trip_every_neuron_once(exported: tuple[Path, list[int]]) -> None:
    model_dir, calls = exported
    got = [
        (int(r["layer"]), int(r["index"]))
        for folder in model_dir.iterdir()
        for r in read_source(folder)["features"]
    ]
    want = set(LAYER_1 + PICKED)
    assert sorted(got) == sorted(want)  # each selected neuron exactly once
    assert sum(calls) == len(want) and max(calls) <= 10


def test_batches_split_at_batch_size(exported: tuple[Path, list[int]]) -> None:
    """Batch N of a layer: the N-th 10 neurons by index, the same ones in both folders."""
    model_dir, _ = exported
    layer1 = model_dir / "1"
    for n in range(7):  # 64 neurons -> 6 batches of 10 and one of 4
        feats = read_jsonl(layer1 / "features" / f"batch-{n}.jsonl.gz")
        assert [int(r["index"]) for r in feats] == list(range(10 * n, min(64, 10 * n + 10)))
        acts = read_jsonl(layer1 / "activations" / f"batch-{n}.jsonl.gz")
        assert {r["index"] for r in acts} == {r["index"] for r in feats}
    assert not (layer1 / "features" / "batch-7.jsonl.gz").exists()
    assert [int(r["index"]) for r in read_source(model_dir / "0")["features"]] == [5, 63]


def test_values_equal_the_atlas(exported: tuple[Path, list[int]], atlas: Atlas) -> None:
    model_dir, _ = exported
    seen: dict[str, int] = {}
    for folder in model_dir.iterdir():
        t = read_source(folder)
        acts_of: dict[str, list[dict[str, Any]]] = {}
        for a in t["activations"]:
            acts_of.setdefault(a["index"], []).append(a)
        for feat in t["features"]:
            rec = atlas.neuron(int(feat["layer"]), int(feat["index"]))
            check_feature(feat, rec)
            for kind, n in check_activations(acts_of[feat["index"]], rec).items():
                seen[kind] = seen.get(kind, 0) + n
    assert all(seen.values()), seen  # every kind of row, negative interval samples included


def shown(piece: str) -> str:
    return piece.replace("\u2581", " ")


def check_feature(feat: dict[str, Any], rec: Any) -> None:
    s = rec.stats
    assert feat["maxActApprox"] == s.max and feat["frac_nonzero"] == s.frac_positive
    assert feat["pos_str"] == [shown(w.token) for w in rec.write_top]
    assert feat["pos_values"] == [w.score for w in rec.write_top]
    assert feat["neg_str"] == [shown(w.token) for w in rec.write_bottom]
    assert feat["neg_values"] == [w.score for w in rec.write_bottom]
    # the positive side of the exact histogram: every token at or above zero, in its bin
    edges, counts = rec.histogram_edges, rec.histogram_counts
    nonneg = sum(c for i, c in enumerate(counts) if i > 0 and edges[i - 1] >= 0)
    assert sum(feat["freq_hist_data_bar_heights"]) == nonneg
    assert nonneg >= round(s.frac_positive * s.count)
    for h, v in zip(
        feat["freq_hist_data_bar_heights"], feat["freq_hist_data_bar_values"], strict=True
    ):
        i = next(k for k in range(1, len(counts)) if edges[k - 1] <= v < _upper(edges, k))
        assert counts[i] == h and 0 <= v <= s.max


def _upper(edges: list[float], k: int) -> float:
    return edges[k] if k < len(edges) else math.inf


def check_activations(rows: list[dict[str, Any]], rec: Any) -> dict[str, int]:
    """Top examples first (binMin -1), then every interval's samples (highest interval first),
    then the bottom examples; every row's ``maxValue`` and ``maxValueTokenIndex`` against the
    atlas. Returns how many rows of each kind were checked."""
    samples = [(iv, ex) for iv in reversed(rec.intervals) for ex in iv.samples]
    assert len(rows) == len(rec.top) + len(samples) + len(rec.bottom)
    tops, rest = rows[: len(rec.top)], rows[len(rec.top) :]
    for row, ex in zip(tops, rec.top, strict=True):
        assert row["tokens"] == [shown(t) for t in ex.tokens] and row["dataSource"] == "top"
        assert row["values"] == ex.acts  # the window's stored values (its own precision)
        assert ex.acts[ex.position] == pytest.approx(ex.value, rel=1e-2)
        assert (row["binMin"], row["binMax"], row["binContains"]) == (-1, ex.value, -1)
        assert row["maxValue"] == max(ex.acts)  # a top example: the window's maximum
        assert row["maxValueTokenIndex"] == ex.acts.index(max(ex.acts))
        assert row["minValue"] == min(ex.acts) and row["qualifyingTokenIndex"] == ex.position
    counts = {"top": len(tops), "negative samples": 0, "samples": 0, "bottom": 0}
    for row, (iv, ex) in zip(rest, samples, strict=False):
        assert row["tokens"] == [shown(t) for t in ex.tokens] and "dataSource" not in row
        assert row["values"][ex.position] == ex.value and row["qualifyingTokenIndex"] == ex.position
        assert sum(v != 0 for v in row["values"]) <= 1  # only the sampled token's value is kept
        # the sample's own token and value, never the window's first token for an unstored 0
        assert (row["maxValueTokenIndex"], row["maxValue"]) == (ex.position, ex.value)
        assert row["minValue"] == ex.value
        assert (row["binMin"], row["binMax"], row["binContains"]) == (iv.lo, iv.hi, iv.fraction)
        assert iv.lo <= ex.value <= iv.hi
        counts["samples"] += 1
        counts["negative samples"] += ex.value < 0
    for row, ex in zip(rest[len(samples) :], rec.bottom, strict=True):
        assert row["tokens"] == [shown(t) for t in ex.tokens] and row["dataSource"] == "bottom"
        assert row["values"] == ex.acts  # the window's stored values (its own precision)
        assert ex.acts[ex.position] == pytest.approx(ex.value, rel=1e-2)
        assert (row["maxValueTokenIndex"], row["maxValue"]) == (ex.position, ex.value)
        assert row["minValue"] == min(ex.acts) and row["qualifyingTokenIndex"] == ex.position
        assert not {"binMin", "binMax", "binContains"} & set(row)
        counts["bottom"] += 1
    return counts


def test_layer_subset_has_only_those_layers(atlas: Atlas, tmp_path: Path) -> None:
    model_dir = export_neuronpedia(atlas, [(2, n) for n in range(64)], tmp_path, model_id="m")
    assert [p.name for p in model_dir.iterdir()] == ["2"] and model_dir == tmp_path / "m"
    layers = {r["layer"] for r in read_source(model_dir / "2")["activations"]}
    assert layers == {"2"}


def test_reexport_replaces_and_failure_leaves_nothing(
    atlas: Atlas, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    export_neuronpedia(atlas, [(0, n) for n in range(12)], tmp_path, batch_size=5)
    export_neuronpedia(atlas, [(0, 1)], tmp_path, batch_size=5)  # a smaller selection
    assert [r["index"] for r in read_source(tmp_path / "tiny-gemma2" / "0")["features"]] == ["1"]
    real = atlas.neuron

    def failing(layer: int, index: int, n_intervals: int = 10) -> Any:
        if index == 7:
            raise OSError("disk gone")
        return real(layer, index, n_intervals)

    monkeypatch.setattr(atlas, "neuron", failing)
    with pytest.raises(OSError):
        export_neuronpedia(atlas, [(2, n) for n in range(12)], tmp_path, batch_size=5)
    assert sorted(p.name for p in (tmp_path / "tiny-gemma2").iterdir()) == ["0"]


@pytest.mark.parametrize(
    ("neurons", "kw", "match"),
    [
        ([(5, 0)], {}, "layer 5 is not in the atlas"),
        ([(0, 64)], {}, "out of range"),
        ([], {}, "no neurons"),
        ([(0, 1)], {"model_id": "Bad/Id"}, "model id"),
        ([(0, 1)], {"batch_size": 0}, "batch size"),
    ],
)
def test_bad_inputs(atlas: Atlas, tmp_path: Path, neurons: Any, kw: Any, match: str) -> None:
    with pytest.raises(BadArgumentError, match=match):
        export_neuronpedia(atlas, neurons, tmp_path, **kw)
    assert list(tmp_path.iterdir()) == []  # nothing written


def test_out_dir_is_a_file(atlas: Atlas, tmp_path: Path) -> None:
    f = tmp_path / "f"
    f.write_text("x")
    with pytest.raises(BadArgumentError, match="is a file"):
        export_neuronpedia(atlas, [(0, 1)], f)


def test_model_slug() -> None:
    assert model_slug("google/gemma-2-2b") == "gemma-2-2b"
    assert model_slug("/models/Gemma 3 270M.gguf") == "gemma-3-270m-gguf"


def test_cli_bad_model_id(
    export_atlas: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from neuron_signatures.cli import main

    out = str(tmp_path / "E")
    rc = main(["export", "--atlas", str(export_atlas), "--format", "neuronpedia", "--layers", "1",
               "--out_dir", out, "--model_id", "Gemma 2", "--no_progress"])  # fmt: skip
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1 and "model id 'Gemma 2'" in err
    assert not (tmp_path / "E").exists()


def test_validator_rejects_what_neuronpedia_would() -> None:
    """The transcription is not vacuous: unknown, missing and mistyped fields are caught."""
    row = {"modelId": "m", "layer": "1", "index": "2", "frac_nonzero": 0.5}
    assert S.validate(row, S.NEURON) == []
    assert S.validate({**row, "bogus": 1}, S.NEURON) == ["unknown field 'bogus'"]
    assert S.validate({"modelId": "m", "layer": "1"}, S.NEURON) == ["missing 'index'"]
    assert S.validate({**row, "index": 2}, S.NEURON) == ["'index' is not String: 2"]
    assert S.validate({**row, "pos_values": [1.0, "x"]}, S.NEURON) != []
    assert S.validate({**row, "hasVector": 1}, S.NEURON) != []  # Boolean is not a number
    assert S.validate({**row, "maxActApprox": True}, S.NEURON) != []
    assert S.validate({**row, "maxActApprox": None}, S.NEURON) == []  # Float? is nullable
