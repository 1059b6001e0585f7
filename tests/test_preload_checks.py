"""Bad flags fail in a second, as one line and exit 2, before any model or tokenizer loads:
layers and neurons the model lacks (its config.json or the known-model table), a corpus field
that is missing, an ``hf:`` corpus with the hub out of reach."""

from __future__ import annotations

import json
import sys
import time
import types
from pathlib import Path
from typing import Any

import pytest

from neuron_signatures import models
from neuron_signatures.atlas.corpus import CorpusSpec, iter_documents
from neuron_signatures.models import specs
from tests.cli_run import run_cli

OFFLINE_VARS = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")


@pytest.fixture
def no_model(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Any model or tokenizer load fails the test; an empty conversion cache (the embedded
    model's shape then comes from the known-model table, and nothing is converted)."""

    def refuse(*_: object, **__: object) -> None:
        raise AssertionError("a model or tokenizer was loaded")

    for name in ("load_model", "load_tokenizer"):
        monkeypatch.setattr(models, name, refuse)
        monkeypatch.setattr(models.load, name, refuse)
    monkeypatch.setenv("NEURON_SIGNATURES_CACHE", str(tmp_path / "cache"))


def one_line(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[str, float]:
    t0 = time.perf_counter()
    rc, out, err = run_cli(capsys, *argv)
    seconds = time.perf_counter() - t0
    assert rc == 2 and out == "" and err.count("\n") == 1 and err.startswith("error: "), err
    return err, seconds


def atlas(corpus: Path | str, out: Path, *extra: str) -> list[str]:
    return ["atlas", "--corpus", str(corpus), "--out_dir", str(out), "--no_progress", *extra]


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    p = tmp_path / "c.txt"
    p.write_text("hello world\n")
    return p


@pytest.mark.parametrize("model", ["tiny", "gemma3-270m"])
def test_atlas_layers_out_of_range(
    no_model: None,
    tiny_model_dir: Path,
    corpus: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    model: str,
) -> None:
    """Before the fix: the tokenizer, the whole corpus's windows and the model came first."""
    name = str(tiny_model_dir) if model == "tiny" else model
    n = 3 if model == "tiny" else 18
    out = tmp_path / "A"
    err, _ = one_line(capsys, *atlas(corpus, out, "--model_name", name, "--layers", "1,99"))
    assert err == f"error: --layers 99 out of range: {name} has {n} layers, use 0..{n - 1}\n"
    assert not out.exists()


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        ("c.jsonl", '{"body": "hello world"}\n', "c.jsonl line 1 has no field 'text'"),
        ("c.json", '[{"body": "hello"}, {"text": "x"}]', "c.json item 0 has no field 'text'"),
        ("c.json", '  [ {"body": "x"}, "hello"]', "c.json item 0 has no field 'text'"),
        ("c.jsonl", '\n\n{"text": 3}\n', "c.jsonl line 3: field 'text' is int, not text"),
        ("c.jsonl", "[1, 2]\n", "c.jsonl line 1 is not an object or a string"),
    ],
)
def test_atlas_corpus_field(
    no_model: None,
    tiny_model_dir: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    name: str,
    text: str,
    message: str,
) -> None:
    """A missing --text_field is seen in the first rows, before the tokenizer loads."""
    path = tmp_path / name
    path.write_text(text)
    out = tmp_path / "A"
    err, _ = one_line(capsys, *atlas(path, out, "--model_name", str(tiny_model_dir)))
    assert message in err
    assert not out.exists()


def test_atlas_parquet_column(
    no_model: None, tiny_model_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = tmp_path / "c.parquet"
    pq.write_table(pa.table({"body": ["hello"]}), path)
    err, _ = one_line(capsys, *atlas(path, tmp_path / "A", "--model_name", str(tiny_model_dir)))
    assert "has no column 'text' (columns: body): pass --text_field NAME" in err


@pytest.mark.parametrize(
    ("model", "flags", "message"),
    [
        ("tiny", ["--set", "L99/N1=0"], "layer 99"),
        ("gemma3-270m", ["--set", "L99/N1=0"], "layer 99"),
        ("tiny", ["--set", "L1/N1=0", "--also", "scale L2/N64=2"], "neuron 64"),
        ("gemma3-270m", ["--add", "17:2048=1"], "neuron 2048"),
    ],
)
def test_intervene_neuron_the_model_lacks(
    no_model: None,
    tiny_model_dir: Path,
    capsys: pytest.CaptureFixture[str],
    model: str,
    flags: list[str],
    message: str,
) -> None:
    """Before the fix: refused by run_interventions, after the tokenizer and the model loaded."""
    name = str(tiny_model_dir) if model == "tiny" else model
    err, _ = one_line(capsys, "intervene", "--prompt", "hello", "--model_name", name, *flags)
    assert message in err and "out of range" in err


def test_dump_layers_out_of_range(
    no_model: None, tiny_model_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Before the fix: refused only once the tokenizer and the model had loaded."""
    prompts = tmp_path / "p.json"
    prompts.write_text(json.dumps([{"id": "a", "text": "hello"}]))
    out = tmp_path / "run"
    argv = ["dump", "--prompts_json", str(prompts), "--out_dir", str(out)]
    err, _ = one_line(capsys, *argv, "--model_name", str(tiny_model_dir), "--layers", "0-3")
    assert err == f"error: --layers 3 out of range: {tiny_model_dir} has 3 layers, use 0..2\n"
    assert not out.exists()


def test_dump_prompts_with_a_wrong_field(
    no_model: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Already checked before the load (pinned here with the others)."""
    prompts = tmp_path / "p.json"
    prompts.write_text(json.dumps([{"id": "a", "txt": "hello"}]))
    err, _ = one_line(capsys, "dump", "--prompts_json", str(prompts), "--out_dir", str(tmp_path))
    assert '"text" must be a string' in err


# -- hf: corpora -------------------------------------------------------------------------------


@pytest.fixture
def empty_hf_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hf" / "hub"))
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "hf" / "datasets"))
    return tmp_path / "hf"


def _no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in OFFLINE_VARS:
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(specs, "_can_connect", lambda *_: False)


@pytest.mark.parametrize("how", ["HF_HUB_OFFLINE", "no network"])
def test_hf_corpus_offline_fails_fast(
    no_model: None,
    empty_hf_cache: Path,
    tiny_model_dir: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    how: str,
) -> None:
    """Before the fix: ``datasets`` retried for ~30 s (22 lines of 'Retrying in 1s'), or took
    2.5 s to import and refuse with HF_HUB_OFFLINE set."""
    if how == "no network":
        _no_network(monkeypatch)
    else:
        monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.delitem(sys.modules, "datasets", raising=False)  # its import alone takes ~2 s
    out = tmp_path / "A"
    argv = atlas("hf:someone/corpus:train", out, "--model_name", str(tiny_model_dir))
    err, seconds = one_line(capsys, *argv)
    assert err.startswith("error: cannot open hf:someone/corpus:train: the Hugging Face hub is out")
    assert ("HF_HUB_OFFLINE is set" if how == "HF_HUB_OFFLINE" else "no connection") in err
    assert seconds < 2 and "datasets" not in sys.modules and not out.exists()


def test_hf_corpus_without_datasets(
    no_model: None,
    tiny_model_dir: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "datasets", None)  # import datasets -> ImportError
    argv = atlas("hf:someone/corpus", tmp_path / "A", "--model_name", str(tiny_model_dir))
    err, seconds = one_line(capsys, *argv)
    assert "pip install 'neuron-signatures[hf]'" in err and seconds < 2


@pytest.mark.parametrize("where", ["hub", "datasets"])
def test_hf_corpus_offline_reads_a_cached_copy_offline(
    empty_hf_cache: Path, monkeypatch: pytest.MonkeyPatch, where: str
) -> None:
    """A cached dataset is opened with the hub libraries in offline mode (no retries)."""
    import huggingface_hub.constants

    if where == "hub":
        (empty_hf_cache / "hub" / "datasets--Someone--Corpus").mkdir(parents=True)
    else:
        (empty_hf_cache / "datasets" / "someone___corpus").mkdir(parents=True)
    _no_network(monkeypatch)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)  # as read at import
    seen: list[Any] = []
    fake = types.ModuleType("datasets")
    fake.config = types.SimpleNamespace(HF_HUB_OFFLINE=False)  # type: ignore[attr-defined]
    fake.logging = types.SimpleNamespace(set_verbosity_error=lambda: None)  # type: ignore[attr-defined]

    def load_dataset(name: str, split: str, streaming: bool) -> Any:
        hub_offline = huggingface_hub.constants.is_offline_mode()
        seen.append((name, split, fake.config.HF_HUB_OFFLINE, hub_offline))  # type: ignore[attr-defined]
        return iter([{"text": "a"}, {"text": "b"}])

    fake.load_dataset = load_dataset  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "datasets", fake)
    docs = list(iter_documents(CorpusSpec("hf:Someone/Corpus")))
    assert [d.text for d in docs] == ["a", "b"]
    assert seen == [("Someone/Corpus", "train", True, True)]
    assert not fake.config.HF_HUB_OFFLINE and not huggingface_hub.constants.is_offline_mode()  # type: ignore[attr-defined]
