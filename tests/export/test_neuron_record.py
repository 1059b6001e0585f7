"""NeuronRecord export and reader: the atlas round trip, OpenAI's loader (a transcription, and the
real package when installed), files written by other tools, and bad folders and files."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from neuron_signatures.atlas import NeuronAtlas, open_atlas
from neuron_signatures.errors import RunFormatError
from neuron_signatures.export.neuron_record import (
    INFO_FILE,
    export_neuron_records,
    load_neuron_record,
    open_neuron_records,
    record_path,
)
from tests.export import openai_transcription as oai

LAYER = 1


@pytest.fixture(scope="module")
def exported(export_atlas: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Every neuron of layer 1, exported once (do not modify)."""
    atlas = open_atlas(export_atlas)
    out = tmp_path_factory.mktemp("nr") / "E"
    calls: list[int] = []
    neurons = [(LAYER, n) for n in range(atlas.d_mlp)]
    assert export_neuron_records(atlas, neurons, out, progress=calls.append) == out
    assert calls == [1] * atlas.d_mlp
    return out


def same(a: list[float], b: list[float]) -> bool:
    """Equal lists of floats, NaN equal to NaN."""
    return len(a) == len(b) and all(
        x == y or (math.isnan(x) and math.isnan(y)) for x, y in zip(a, b, strict=True)
    )


def text(tokens: list[str]) -> list[str]:
    return [t.replace("\u2581", " ") for t in tokens]


def expected_top(rec: NeuronAtlas) -> list[tuple[list[str], list[float]]]:
    """One record per window, at its best rank; BOS (position 0) left out."""
    out, seen = [], set()
    for ex in rec.top:
        if ex.window in seen:
            continue
        seen.add(ex.window)
        assert ex.acts is not None
        out.append((text(ex.tokens[1:]), [float(a) for a in ex.acts[1:]]))
    return out


def test_round_trip_equals_the_atlas(export_atlas: Path, exported: Path) -> None:
    atlas = open_atlas(export_atlas)
    folder = open_neuron_records(exported)
    assert folder.layers == [LAYER] and folder.neurons(LAYER) == list(range(atlas.d_mlp))
    for n in range(atlas.d_mlp):
        rec, got = atlas.neuron(LAYER, n), folder.record(LAYER, n)
        assert (got.neuron_id.layer, got.neuron_id.index) == (LAYER, n)
        top = [(r.tokens, r.activations) for r in got.most_positive_activation_records]
        assert top == expected_top(rec)
        assert got.mean == rec.stats.mean and got.variance == rec.stats.variance
        assert same([got.skewness, got.kurtosis], [rec.stats.skewness, rec.stats.kurtosis])
        assert got.quantile_boundaries == [iv.hi for iv in rec.intervals[:-1]]
        buckets = got.random_sample_by_quantile
        assert buckets is not None and len(buckets) == len(rec.intervals)
        for bucket, iv in zip(buckets, rec.intervals, strict=True):
            assert len(bucket) == len(iv.samples)
            for r, ex in zip(bucket, iv.samples, strict=True):
                assert r.tokens == text(ex.tokens[1:])
                known = [i for i, a in enumerate(r.activations) if not math.isnan(a)]
                assert known == [ex.position - 1] and r.activations[known[0]] == ex.value
        # random_sample: the atlas's uniform draw over all tokens, not the stratified buckets
        assert len(got.random_sample) == len(rec.random_sample) > 0
        for r, ex in zip(got.random_sample, rec.random_sample, strict=True):
            assert r.tokens == text(ex.tokens[1:]) and r.activations[ex.position - 1] == ex.value


def test_windows_of_the_top_examples_are_not_repeated(export_atlas: Path, exported: Path) -> None:
    atlas, folder = open_atlas(export_atlas), open_neuron_records(exported)
    repeats = 0
    for n in range(atlas.d_mlp):
        windows = [ex.window for ex in atlas.neuron(LAYER, n).top]
        repeats += len(windows) - len(set(windows))
        got = folder.record(LAYER, n).most_positive_activation_records
        assert len(got) == len(set(windows))
        maxima = [max(r.activations) for r in got]  # best excerpt first, as OpenAI ranks them
        # window activations are stored at the atlas's example dtype (bf16 by default)
        assert maxima[0] == pytest.approx(atlas.neuron(LAYER, n).top[0].value, rel=8e-3)
    assert repeats > 0  # the fixture does exercise the de-duplication


def test_files_load_with_openai_loader_transcription(exported: Path) -> None:
    for path in sorted((exported / str(LAYER)).glob("*.json"))[:8]:
        raw = path.read_bytes()
        obj = oai.loads(raw)
        assert isinstance(obj, oai.NeuronRecord) and isinstance(obj.neuron_id, oai.NeuronId)
        assert obj.neuron_id.layer_index == LAYER and obj.neuron_id.neuron_index == int(path.stem)
        assert all(
            isinstance(r, oai.ActivationRecord) for r in obj.most_positive_activation_records
        )
        assert obj.random_sample_by_quantile is not None
        assert all(
            isinstance(r, oai.ActivationRecord) for b in obj.random_sample_by_quantile for r in b
        )
        # what their dumps writes for the object their loads built is byte-for-byte our file
        # (a missing activation is NaN in our files' memory form, None in theirs: both null)
        assert oai.orjson_dumps(obj) == raw
        assert b"NaN" not in raw and b"Infinity" not in raw  # strict JSON for every parser
        ours = load_neuron_record(path)
        assert [r.activations for r in ours.most_positive_activation_records] == [
            r.activations for r in obj.most_positive_activation_records
        ]


def test_files_load_with_the_real_neuron_explainer(exported: Path) -> None:
    acts = pytest.importorskip("neuron_explainer.activations.activations")
    fdc = pytest.importorskip("neuron_explainer.fast_dataclasses")
    path = exported / str(LAYER) / "3.json"
    rec = fdc.loads(path.read_bytes())
    assert isinstance(rec, acts.NeuronRecord)
    assert fdc.dumps(rec) == path.read_bytes()
    assert rec.max_activation == max(
        max(r.activations) for r in load_neuron_record(path).most_positive_activation_records
    )


def openai_style_record(layer: int, neuron: int) -> oai.NeuronRecord:
    """A record built with the transcribed dataclasses, as OpenAI's code would hold it."""
    ar = oai.ActivationRecord
    return oai.NeuronRecord(
        neuron_id=oai.NeuronId(layer_index=layer, neuron_index=neuron),
        random_sample=[ar(tokens=["a", " b"], activations=[0.0, 0.25])],
        random_sample_by_quantile=[[ar(["x"], [0.0])], [ar(["y", "<b>"], [0.5, 1.5])]],
        quantile_boundaries=[0.1],
        mean=0.125,
        variance=0.5,
        skewness=math.nan,
        kurtosis=3.5,
        most_positive_activation_records=[ar(tokens=[" The", " é"], activations=[2.0, 7.25])],
    )


def test_reads_openai_files_in_every_spelling(tmp_path: Path) -> None:
    src = openai_style_record(3, 17)
    canonical = oai.orjson_dumps(src)
    obj = json.loads(canonical)
    variants = {
        "dumps": canonical,
        "nan_literal": canonical.replace(b'"skewness":null', b'"skewness":NaN'),
        "no_class_names": json.dumps(_strip_names(obj)).encode(),
        "debugger_ids": canonical.replace(  # openai/transformer-debugger: older key names, str
            b'"layer_index":3,"neuron_index":17', b'"idx":17,"layer":"3"'
        ),
        "indented": json.dumps(obj, indent=2).encode(),
    }
    for name, data in variants.items():
        path = tmp_path / name / "3" / "17.json"
        path.parent.mkdir(parents=True)
        path.write_bytes(data)
        got = open_neuron_records(path.parents[1]).record(3, 17)
        assert (got.neuron_id.layer, got.neuron_id.index) == (3, 17), name
        assert got.most_positive_activation_records[0].tokens == [" The", " é"]
        assert got.most_positive_activation_records[0].activations == [2.0, 7.25]
        assert [[r.tokens for r in b] for b in got.random_sample_by_quantile or []] == [
            [["x"]],
            [["y", "<b>"]],
        ]
        assert got.bucket_ranges() == [(-math.inf, 0.1), (0.1, math.inf)]
        assert (got.mean, got.variance, got.kurtosis) == (0.125, 0.5, 3.5)
        assert math.isnan(got.skewness), name


def _strip_names(obj: object) -> object:
    if isinstance(obj, dict):
        return {k: _strip_names(v) for k, v in obj.items() if k != "dataclass_name"}
    if isinstance(obj, list):
        return [_strip_names(v) for v in obj]
    return obj


def test_neurons_subfolder_and_jsonl_files(tmp_path: Path) -> None:
    rec = json.loads(oai.orjson_dumps(openai_style_record(0, 4)))
    layer_dir = tmp_path / "neurons" / "0"
    layer_dir.mkdir(parents=True)
    (layer_dir / "4.jsonl").write_text("\n" + json.dumps(rec) + "\n")
    (layer_dir / ".4.json.123.tmp").write_text("{")  # an interrupted write: ignored
    (layer_dir / "notes.txt").write_text("x")
    folder = open_neuron_records(tmp_path)
    assert folder.root == tmp_path / "neurons" and list(folder.files) == [(0, 4)]
    assert folder.record(0, 4).mean == 0.125


@pytest.mark.parametrize(
    ("content", "needle"),
    [
        ("{", "JSONDecodeError"),
        ('{"mean": 1}', "neuron_id"),
        ('{"neuron_id": {"layer_index": 0}}', "neuron_index"),
        (
            '{"neuron_id": {"layer_index": 0, "neuron_index": 1}, '
            '"random_sample": [{"tokens": ["a"], "activations": [1, 2]}]}',
            "1 tokens, 2 activations",
        ),
    ],
)
def test_bad_record_files_fail_in_one_line(tmp_path: Path, content: str, needle: str) -> None:
    path = tmp_path / "0" / "1.json"
    path.parent.mkdir()
    path.write_text(content)
    with pytest.raises(RunFormatError) as e:
        open_neuron_records(tmp_path).record(0, 1)
    assert needle in str(e.value) and str(path) in str(e.value) and "\n" not in str(e.value)


def test_folders_without_records_fail_in_one_line(tmp_path: Path) -> None:
    (tmp_path / "0").mkdir()
    (tmp_path / "0" / "x.json").write_text("{}")
    for folder, needle in [(tmp_path, "holds no NeuronRecord"), (tmp_path / "no", "not exist")]:
        with pytest.raises(RunFormatError) as e:
            open_neuron_records(folder)
        assert needle in str(e.value) and "\n" not in str(e.value)
    (tmp_path / "0" / "1.json").write_bytes(oai.orjson_dumps(openai_style_record(0, 1)))
    with pytest.raises(RunFormatError, match="has no record of L0/N9"):
        open_neuron_records(tmp_path).record(0, 9)


def test_an_interrupted_export_leaves_only_complete_files(
    export_atlas: Path, tmp_path: Path
) -> None:
    atlas = open_atlas(export_atlas)

    def stop_after_three(k: int, done: list[int] = []) -> None:  # noqa: B006
        done.append(k)
        if len(done) == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        export_neuron_records(
            atlas, [(0, n) for n in range(10)], tmp_path, progress=stop_after_three
        )
    files = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*") if p.is_file())
    assert files == ["0/0.json", "0/1.json", "0/2.json", INFO_FILE]
    for n in range(3):
        assert oai.loads(record_path(tmp_path, 0, n).read_bytes()).neuron_id.neuron_index == n
    info = json.loads((tmp_path / INFO_FILE).read_text())
    assert info["model"] == atlas.model_name and info["n_neurons"] == 10


def test_missing_moments_are_null_and_read_back_as_nan(export_atlas: Path, tmp_path: Path) -> None:
    """An atlas without skewness / kurtosis (built before they were kept) writes ``null``."""
    atlas = open_atlas(export_atlas)
    real = atlas.neuron

    def old_neuron(layer: int, index: int) -> NeuronAtlas:
        rec = real(layer, index)
        rec.stats.skewness = rec.stats.kurtosis = float("nan")
        return rec

    atlas.neuron = old_neuron  # type: ignore[method-assign]
    export_neuron_records(atlas, [(2, 0)], tmp_path)
    raw = json.loads(record_path(tmp_path, 2, 0).read_text())
    assert raw["skewness"] is None and raw["kurtosis"] is None
    got = load_neuron_record(record_path(tmp_path, 2, 0))
    assert np.isnan([got.skewness, got.kurtosis]).all() and got.mean == real(2, 0).stats.mean
