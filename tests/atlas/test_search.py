"""Atlas search against brute force: token hits from every neuron's record, text hits from a
direct capture of the same ids; the CLI's tables, JSON and one-line errors."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from neuron_signatures.atlas import Atlas, TokenHit, load_atlas_model, open_atlas
from neuron_signatures.cli import main
from neuron_signatures.errors import BadArgumentError
from neuron_signatures.models import capture_hook_post
from tests.atlas.test_cli import atlas_args, one_line_error
from tests.cli_run import run_cli

TEXT = "The capital of Texas is Austin , the largest city is Houston"


@pytest.fixture(scope="module")
def atlas_dir(
    tiny_model_dir: Path, corpus_txt: Path, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    out = tmp_path_factory.mktemp("search") / "A"
    assert main(atlas_args(corpus_txt, out, tiny_model_dir, "--max_tokens", "3e2")) == 0
    return out


@pytest.fixture(scope="module")
def brute(atlas_dir: Path) -> dict[tuple[int, int], tuple[list[int], float]]:
    """``{(layer, n): (token id of each top example, atlas max)}`` from every neuron's record."""
    atlas = open_atlas(atlas_dir)
    out = {}
    for layer in atlas.layers:
        for n in range(atlas.d_mlp):
            rec = atlas.neuron(layer, n, n_intervals=1)
            out[layer, n] = ([ex.token_ids[ex.position] for ex in rec.top], rec.stats.max)
    return out


@pytest.fixture(scope="module")
def lm(atlas_dir: Path) -> Any:
    return load_atlas_model(open_atlas(atlas_dir), device="cpu")


def expected_hits(brute: dict, ids: list[int], layers: list[int]) -> list[TokenHit]:
    hits = [
        TokenHit(layer, n, sum(t in ids for t in toks), len(toks), mx)
        for (layer, n), (toks, mx) in brute.items()
        if layer in layers and any(t in ids for t in toks)
    ]
    return sorted(hits, key=lambda h: (-h.count, -h.max_value, h.layer, h.index))


def test_search_token_equals_brute_force(atlas_dir: Path, brute: dict) -> None:
    atlas = open_atlas(atlas_dir)
    common = np.bincount([t for toks, _ in brute.values() for t in toks]).argsort()[::-1][:3]
    queries: list[str | int] = ["Austin", "the", ",", *(int(i) for i in common)]
    for q in queries:
        ids = [atlas.vocab.index(q)] if isinstance(q, str) else [q]
        got = atlas.search_token(q, top_n=10**6)
        assert got.token_ids == ids
        want = expected_hits(brute, ids, atlas.layers)
        assert got.hits == want, q
        assert atlas.search_token(q, top_n=3).hits == want[:3]
        layer2 = atlas.search_token(q, layers=[2], top_n=10**6).hits
        assert layer2 == expected_hits(brute, ids, [2])
    assert sum(h.count for h in atlas.search_token(int(common[0]), top_n=10**6).hits) > 10
    assert atlas.token_index is atlas.token_index  # built once per atlas


def test_token_matching_rule(atlas_dir: Path) -> None:
    atlas = open_atlas(atlas_dir)
    austin = atlas.vocab.index("Austin")
    atlas.__dict__["vocab"] = [*atlas.vocab]
    atlas.vocab[3] = "\u2581Austin"  # as SentencePiece writes " Austin"
    for q in ("Austin", " Austin", "\u2581Austin"):
        assert atlas.search_token(q).token_ids == sorted([3, austin]), q
    assert atlas.search_token(austin).token_ids == [austin]
    for bad, match in (("Zanzibar", "not in the vocabulary"), ("", "empty"), (10**6, "range")):
        with pytest.raises(BadArgumentError, match=match):
            atlas.search_token(bad)
    with pytest.raises(BadArgumentError, match="not in the atlas"):
        atlas.search_token("Austin", layers=[0])


def ranked(values: np.ndarray, layers: list[int], n: int) -> list[tuple[int, int]]:
    """Top-n (layer, index) of ``values [L, d]`` by a full sort (ties: lower id first)."""
    flat = values.reshape(-1)
    order = sorted(range(flat.size), key=lambda f: (-flat[f], f))[:n]
    d = values.shape[1]
    return [(layers[f // d], f % d) for f in order]


def test_search_text_equals_capture(atlas_dir: Path, lm: Any) -> None:
    atlas = open_atlas(atlas_dir)
    got = atlas.search_text(TEXT, top_n=7, lm=lm)
    ids = [lm.tokenizer.bos_token_id, *lm.tokenizer(TEXT, add_special_tokens=False).input_ids]
    assert got.token_ids == ids and got.tokens[0] == "<bos>" and got.tokens[6] == "Austin"
    x = torch.tensor([ids])
    cap = capture_hook_post(lm, x, torch.ones_like(x), atlas.layers)
    acts = np.stack([cap[layer][0].numpy() for layer in atlas.layers], 1)  # [T, L, d]
    mx = np.stack([atlas.layer_stats(layer)["max"] for layer in atlas.layers])
    assert got.per_token[0] == [] and len(got.per_token) == len(ids)
    for pos in range(1, len(ids)):
        hits = got.per_token[pos]
        assert [(h.layer, h.index) for h in hits] == ranked(acts[pos], atlas.layers, 7)
        for h in hits:
            row = atlas.layers.index(h.layer)
            assert h.value == float(acts[pos, row, h.index]) and h.position == pos
            assert h.frac_of_max == h.value / mx[row, h.index]
    best = acts[1:].max(0)
    assert [(h.layer, h.index) for h in got.overall] == ranked(best, atlas.layers, 7)
    for h in got.overall:
        row = atlas.layers.index(h.layer)
        assert h.value == float(best[row, h.index])
        assert acts[h.position, row, h.index] == h.value and h.position >= 1


def test_search_text_frac_of_max(atlas_dir: Path, lm: Any) -> None:
    atlas = open_atlas(atlas_dir)
    got = atlas.search_text(TEXT, top_n=5, lm=lm, rank_by="frac_of_max", layers=[2])
    ids = got.token_ids
    x = torch.tensor([ids])
    acts = capture_hook_post(lm, x, torch.ones_like(x), [2])[2][0].numpy()
    mx = atlas.layer_stats(2)["max"]
    assert (mx > 0).all()
    frac = acts / mx
    assert got.rank_by == "frac_of_max"
    for pos in range(1, len(ids)):
        assert [(h.layer, h.index) for h in got.per_token[pos]] == ranked(frac[pos][None], [2], 5)
    assert [(h.layer, h.index) for h in got.overall] == ranked(frac[1:].max(0)[None], [2], 5)
    fracs = [h.frac_of_max for h in got.overall]
    assert fracs == sorted(fracs, reverse=True)


def test_search_text_counts_bos_when_the_atlas_does(
    tiny_model_dir: Path, corpus_txt: Path, tmp_path: Path, lm: Any
) -> None:
    out = tmp_path / "B"
    args = atlas_args(corpus_txt, out, tiny_model_dir, "--max_tokens", "50", "--include_bos")
    assert main(args) == 0
    got = open_atlas(out).search_text("Austin", top_n=3, lm=lm, layers=[1])
    x = torch.tensor([got.token_ids])
    acts = capture_hook_post(lm, x, torch.ones_like(x), [1])[1][0].numpy()
    assert [(h.index, h.value) for h in got.per_token[0]] == [
        (int(i), float(acts[0, i])) for i in np.argsort(-acts[0], kind="stable")[:3]
    ]
    assert got.overall[0].value == float(acts.max())


def test_search_text_errors(atlas_dir: Path, lm: Any) -> None:
    atlas = open_atlas(atlas_dir)
    for text, kw, match in (
        ("", {}, "empty"),
        ("   ", {}, "empty"),
        (TEXT, {"rank_by": "size"}, "rank_by"),
        (TEXT, {"top_n": 0}, "top_n"),
        (TEXT, {"layers": [0]}, "not in the atlas"),
    ):
        with pytest.raises(BadArgumentError, match=match):
            atlas.search_text(text, lm=lm, **kw)


def test_cli_search(atlas_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    a = str(atlas_dir)
    want = open_atlas(atlas_dir).search_token("Austin", top_n=4)
    rc, out, _ = run_cli(capsys, "neuron", "--atlas", a, "--search_token", "Austin", "--top_n", "4")
    assert rc == 0 and "'Austin'" in out and "top examples on it" in out
    assert f"L{want.hits[0].layer}/N{want.hits[0].index}" in out and "neuron --atlas" in out
    rc, out, _ = run_cli(capsys, "neuron", "--atlas", a, "--search_token", "Austin", "--json")
    assert rc == 0 and json.loads(out)["hits"][:4] == [asdict(h) for h in want.hits]
    rc, out, _ = run_cli(capsys, "neuron", "--atlas", a, "--search_text", TEXT, "--top_n", "3")
    assert rc == 0 and "overall" in out and "per token" in out and "Houston" in out
    rc, out, _ = run_cli(
        capsys, "neuron", "--atlas", a, "--search_text", TEXT, "--json", "--layers", "2"
    )
    got = json.loads(out)
    assert rc == 0 and got["text"] == TEXT and got["per_token"][0] == []
    assert len(got["overall"]) == 10 and {h["layer"] for h in got["overall"]} == {2}


def test_cli_search_bad_input(atlas_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    a = str(atlas_dir)
    cases = [
        (["--search_token", "Zanzibar"], "not in the vocabulary"),
        (["--search_text", ""], "empty"),
        ([], "give a neuron id"),
        (["L1/N2", "--search_token", "Austin"], "give one of"),
        (["--search_token", "Austin", "--search_text", "hi"], "give one of"),
        (["--search_token", "Austin", "--layers", "0"], "not in the atlas"),
    ]
    for extra, match in cases:
        one_line_error(capsys, ["neuron", "--atlas", a, *extra], match)


def test_atlas_reading_imports_no_torch(atlas_dir: Path, corpus_txt: Path, tmp_path: Path) -> None:
    import subprocess
    import sys

    def torch_after(code: str) -> str:
        code = f"import sys\n{code}\nprint('torch' in sys.modules)"
        run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
        assert run.returncode == 0, run.stderr
        return run.stdout.strip().splitlines()[-1]

    assert torch_after("import neuron_signatures.atlas as a; a.Atlas") == "False"
    # opening, a neuron's record (exact moments, intervals, samples), layer statistics, search
    read = f"""
from neuron_signatures.atlas import open_atlas, search_token
atlas = open_atlas({str(atlas_dir)!r})
layer = atlas.layers[0]
rec = atlas.neuron(layer, 0)
assert rec.stats.count > 0 and rec.intervals and rec.top
assert len(atlas.layer_stats(layer)["mean"]) == atlas.d_mlp
assert search_token(atlas, int(rec.top[0].token_ids[rec.top[0].position])).hits
atlas.search_token(rec.top[0].tokens[rec.top[0].position])
"""
    assert torch_after(read) == "False"
    # a refused build says so before anything heavy is imported
    out = tmp_path / "A"
    refuse = f"""
from neuron_signatures.cli import main
args = ["--corpus", {str(corpus_txt)!r}, "--out_dir", {str(out)!r}, "--layers", "99"]
assert main(["atlas", *args]) == 2
"""
    assert torch_after(refuse) == "False"
    assert not out.exists()
    assert Atlas.search_token.__doc__
