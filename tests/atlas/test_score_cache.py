"""The write-score cache: computed once per weights, per layer; invalidated by any weight the
scores read; corrupt entries recomputed; the same bytes as no cache; a second atlas reuses it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch

from neuron_signatures.atlas import score_cache
from neuron_signatures.atlas.scores import compute_layer
from tests.atlas.conftest import build
from tests.tiny_models import make_models

K = 4


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "score_cache"
    monkeypatch.setenv(score_cache.CACHE_ENV, str(folder))
    return folder


@pytest.fixture
def fresh_lm(tiny_tokenizer: Any) -> Any:
    """A model of its own: these tests edit its weights."""
    from neuron_signatures.models import wrap_hf_model

    model, _ = make_models("gemma2", seed=3)
    return wrap_hf_model(model, tiny_tokenizer, name="tiny-edit", dtype="fp32")


class Counter:
    """``compute_layer`` that records the layers it computes."""

    def __init__(self) -> None:
        self.layers: list[int] = []

    def __call__(self, w: Any, layer: int, *args: Any, **kw: Any) -> dict[str, Any]:
        self.layers.append(layer)
        return compute_layer(w, layer, *args, **kw)


def scores(lm: Any, layers: list[int], **kw: Any) -> tuple[dict[str, Any], dict[str, Any], list]:
    count = Counter()
    out, info = score_cache.cached_write_scores(lm, layers, K, compute=count, **kw)
    return out, info, count.layers


def assert_equal(a: dict[str, Any], b: dict[str, Any]) -> None:
    assert a.keys() == b.keys()
    for name in a:
        assert a[name].dtype == b[name].dtype and torch.equal(a[name], b[name]), name


def test_layers_are_computed_once_and_reused(fresh_lm: Any, cache: Path) -> None:
    first, info, computed = scores(fresh_lm, [0, 2])
    assert computed == [0, 2] and info["hits"] == [] and info["dir"] == str(cache)
    assert len(list(cache.rglob("*.safetensors"))) == 2
    again, info, computed = scores(fresh_lm, [0, 1, 2])  # a superset: only layer 1 is new
    assert computed == [1] and info["hits"] == [0, 2]
    assert_equal({n: t for n, t in again.items() if not n.startswith("layer_001")}, first)
    _, info, computed = scores(fresh_lm, [1])
    assert computed == [] and info["hits"] == [1]
    uncached, info, computed = scores(fresh_lm, [0, 1, 2], use_cache=False)
    assert computed == [0, 1, 2] and info["dir"] is None
    assert_equal(again, uncached)  # the cache returns exactly what a computation gives


def test_cache_off_by_environment(fresh_lm: Any, cache: Path, monkeypatch: Any) -> None:
    monkeypatch.setenv(score_cache.CACHE_ENV, "off")
    scores(fresh_lm, [0])
    _, info, computed = scores(fresh_lm, [0])
    assert computed == [0] and info["dir"] is None and not cache.exists()


def test_k_is_part_of_the_key(fresh_lm: Any, cache: Path) -> None:
    scores(fresh_lm, [0])
    count = Counter()
    out, _ = score_cache.cached_write_scores(fresh_lm, [0], K + 1, compute=count)
    assert count.layers == [0] and out["layer_000.pos_id"].shape[1] == K + 1


def _edit(lm: Any, what: str) -> None:
    m = lm.plain_model.model  # shares its parameters with the bridge that model_weights reads
    with torch.no_grad():
        if what == "w_out_1":
            m.layers[1].mlp.down_proj.weight[3, 5] += 0.5
        elif what == "post_mlp_norm_2":
            m.layers[2].post_feedforward_layernorm.weight[0] += 0.25
        elif what == "final_norm":
            m.norm.weight[1] += 0.25
        else:
            lm.plain_model.lm_head.weight[7, 0] += 0.5


@pytest.mark.parametrize(
    ("what", "recomputed"),
    [
        ("w_out_1", [1]),
        ("post_mlp_norm_2", [2]),
        ("final_norm", [0, 1, 2]),
        ("unembedding", [0, 1, 2]),
    ],
)
def test_a_changed_weight_invalidates_what_it_feeds(
    fresh_lm: Any, cache: Path, what: str, recomputed: list[int]
) -> None:
    before, _, _ = scores(fresh_lm, [0, 1, 2])
    _edit(fresh_lm, what)
    after, info, computed = scores(fresh_lm, [0, 1, 2])
    assert computed == recomputed
    assert info["hits"] == [n for n in [0, 1, 2] if n not in recomputed]
    assert_equal(after, scores(fresh_lm, [0, 1, 2], use_cache=False)[0])
    changed = {int(n[6:9]) for n in after if not torch.equal(after[n], before[n])}
    assert changed and changed <= set(recomputed)


def _entry(cache: Path, layer: int) -> Path:
    (path,) = cache.rglob(f"layer_{layer:03d}-*.safetensors")
    return path


@pytest.mark.parametrize("damage", ["flip", "truncate", "garbage", "swap"])
def test_a_corrupt_entry_is_recomputed(
    fresh_lm: Any, cache: Path, damage: str, caplog: pytest.LogCaptureFixture
) -> None:
    good, _, _ = scores(fresh_lm, [0, 1])
    path = _entry(cache, 0)
    data = bytearray(path.read_bytes())
    if damage == "flip":  # one bit of the last tensor's data
        data[-3] ^= 0x10
    elif damage == "truncate":
        data = data[: len(data) // 2]
    elif damage == "garbage":
        data = bytearray(b"not a safetensors file")
    else:  # another layer's sound entry under this layer's name: its key does not match
        data = bytearray(_entry(cache, 1).read_bytes())
    path.write_bytes(bytes(data))
    got, info, computed = scores(fresh_lm, [0, 1])
    assert computed == [0] and info["hits"] == [1]
    assert_equal(got, good)
    assert "recomputing" in caplog.text
    assert score_cache.read_entry(path, *_key(fresh_lm, 0), fresh_lm.d_mlp, K) is not None


def _key(lm: Any, layer: int) -> tuple[str]:
    from neuron_signatures.attribution.trace import model_weights

    w = model_weights(lm)
    return (score_cache.layer_key(w, layer, score_cache.model_key(w, K)),)


def test_an_unwritable_cache_costs_time_not_the_scores(
    fresh_lm: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    monkeypatch.setenv(score_cache.CACHE_ENV, str(blocker / "cache"))  # cannot be a folder
    got, _, computed = scores(fresh_lm, [0])
    assert computed == [0]
    assert_equal(got, scores(fresh_lm, [0], use_cache=False)[0])


def test_a_second_atlas_reads_every_layer_from_the_cache(
    atlas_lm: Any, corpus_txt: Path, tmp_path: Path, cache: Path, monkeypatch: Any
) -> None:
    calls: list[int] = []
    real = score_cache.compute_layer

    def counting(w: Any, layer: int, *a: Any, **kw: Any) -> dict[str, Any]:
        calls.append(layer)
        return real(w, layer, *a, **kw)

    monkeypatch.setattr(score_cache, "compute_layer", counting)
    a = build(atlas_lm, tmp_path / "a", corpus_txt, layers=[0, 2])
    assert calls == [0, 2]
    b = build(atlas_lm, tmp_path / "b", corpus_txt, layers=[0, 1, 2], max_tokens=60)
    assert calls == [0, 2, 1]  # a different corpus and a superset of layers: only layer 1
    log = json.loads((b / "build.json").read_text())
    assert log["write_scores_cache"]["hits"] == [0, 2]
    assert log["write_scores_cache"]["computed"] == [1]
    c = build(atlas_lm, tmp_path / "c", corpus_txt, layers=[0, 2])
    assert calls == [0, 2, 1]
    assert json.loads((c / "build.json").read_text())["write_scores_cache"]["computed"] == []
    name = "write_scores.safetensors"
    assert (a / name).read_bytes() == (c / name).read_bytes()
    from safetensors.torch import load_file

    assert_equal(
        load_file(c / name), score_cache.write_score_tensors(atlas_lm, [0, 2], 5, cache=False)
    )


def test_a_bar_while_computing_and_none_when_cached(
    fresh_lm: Any, cache: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    scores(fresh_lm, [0, 1], progress=True)
    err = capsys.readouterr().err
    assert "write scores" in err and "chunk" in err
    scores(fresh_lm, [0, 1, 2], progress=True)
    assert "2 of 3 layers cached" in capsys.readouterr().err
    scores(fresh_lm, [0, 1, 2], progress=True)
    assert capsys.readouterr().err == ""
