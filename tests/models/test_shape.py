"""A model's shape without loading it: config.json on disk, else the known-model table."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from neuron_signatures.errors import BadArgumentError, ModelLoadError
from neuron_signatures.models import specs
from neuron_signatures.models.specs import ModelShape, check_layers, model_shape


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Empty conversion and Hugging Face caches."""
    import huggingface_hub.constants

    monkeypatch.setenv("NEURON_SIGNATURES_CACHE", str(tmp_path / "ns"))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    return tmp_path


def write_config(folder: Path, **cfg: object) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(cfg))
    return folder


def test_local_folder_reads_its_config(tiny_model_dir: Path) -> None:
    shape = model_shape(str(tiny_model_dir))
    assert shape == ModelShape(3, 64, str(tiny_model_dir / "config.json"))


def test_embedded_model_table_then_converted_config(cache: Path) -> None:
    assert model_shape("gemma3-270m") == ModelShape(18, 2048, "known models table")
    assert model_shape("embedded") == ModelShape(18, 2048, "known models table")
    folder = write_config(cache / "ns" / "gemma3-270m", num_hidden_layers=5, intermediate_size=7)
    assert model_shape("gemma3-270m") == ModelShape(18, 2048, "known models table")  # unfinished
    (folder / ".complete").write_text("x\n")
    assert model_shape("gemma3-270m") == ModelShape(5, 7, str(folder / "config.json"))


def test_gguf_file_known_only_once_converted(cache: Path) -> None:
    from neuron_signatures.models.specs import gguf_cache_dir

    gguf = cache / "m.gguf"
    gguf.write_bytes(b"GGUF")
    assert model_shape(str(gguf)) is None
    folder = write_config(gguf_cache_dir(gguf), num_hidden_layers=4, intermediate_size=9)
    (folder / ".complete").write_text("m.gguf\n")
    assert model_shape(str(gguf)) == ModelShape(4, 9, str(folder / "config.json"))


def test_hub_id_from_cache_or_table(cache: Path) -> None:
    assert model_shape("google/gemma-2-2b") == ModelShape(26, 9216, "known models table")
    assert model_shape("someone/not-cached") is None
    repo = cache / "hub" / "models--someone--cached"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text("abc123")
    snap = write_config(  # a multimodal config: the text model's shape
        repo / "snapshots" / "abc123",
        architectures=["Gemma3ForConditionalGeneration"],
        text_config={"num_hidden_layers": 34, "intermediate_size": 10240},
    )
    assert model_shape("someone/cached") == ModelShape(34, 10240, str(snap / "config.json"))


def test_unusable_configs_give_none(tmp_path: Path) -> None:
    per_layer = write_config(tmp_path / "a", num_hidden_layers=2, intermediate_size=[8, 16])
    assert model_shape(str(per_layer)) is None
    broken = tmp_path / "b"
    broken.mkdir()
    (broken / "config.json").write_text("{not json")
    assert model_shape(str(broken)) is None
    with pytest.raises(ModelLoadError, match="does not exist"):
        model_shape(str(tmp_path / "missing.gguf"))


def test_check_layers(tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    check_layers(str(tiny_model_dir), [0, 2])
    check_layers(str(tiny_model_dir), None)
    with pytest.raises(BadArgumentError) as e:
        check_layers(str(tiny_model_dir), [1, 3, 99])
    assert str(e.value) == f"--layers 3,99 out of range: {tiny_model_dir} has 3 layers, use 0..2"
    monkeypatch.setattr(specs, "model_shape", lambda _: None)  # unknown: the load will check
    check_layers(str(tiny_model_dir), [99])
