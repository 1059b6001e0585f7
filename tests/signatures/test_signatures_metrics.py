"""Signature metrics: vectorised code pinned to a slow per-neuron reference; token matching."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from neuron_signatures.signatures.compute import compute_signatures
from neuron_signatures.signatures.config import SignatureConfig, parse_neuron_ids
from neuron_signatures.signatures.metrics import (
    concept_span_mask,
    cosine_columns,
    gather_columns,
    say_targets,
    token_tables,
)
from neuron_signatures.store import Run
from neuron_signatures.store.build import write_run
from neuron_signatures.tokens import is_functional

WORDS = [
    "<bos>",
    "\u2581the",
    "\u2581cat",
    "\u2581is",
    ",",
    "\u2581Austin",
    "\u2581Texas",
    "\u2581of",
]
PAIRS = [(0, 1), (0, 4), (1, 0), (2, 2), (2, 4), (1, 3)]


@pytest.fixture(scope="module")
def random_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Run, list[np.ndarray]]:
    rng = np.random.default_rng(7)
    prompts, acts = [], []
    for i, n in enumerate([6, 9, 4, 7, 1, 8]):  # prompt 4 is BOS only
        ids = [0, *rng.integers(1, len(WORDS), n - 1).tolist()]
        prompts.append({"probe_id": f"p{i}", "text": f"t{i}", "token_ids": ids,
                        "tokens": [WORDS[t] for t in ids]})  # fmt: skip
        acts.append(rng.normal(size=(3, n, 5)).astype(np.float32))
    run = write_run(tmp_path_factory.mktemp("m") / "run", prompts=prompts, acts=acts,
                    model_name="synthetic", save_dtype="fp32", prompts_per_shard=2)  # fmt: skip
    return run, acts


def reference(acts: list[np.ndarray], layer: int, neuron: int, probe: int, seed: int,
              mode: str) -> dict[str, Any]:  # fmt: skip
    """Slow, obviously-correct metrics of one neuron on one probe (BOS dropped)."""
    f = np.abs if mode == "abs" else (lambda v: v)
    everything = np.concatenate([f(a[layer, 1:, neuron]) for a in acts])
    q25, med, q75 = (float(np.percentile(everything, q)) for q in (25, 50, 75))
    scale = (q75 - q25) / 1.349
    a = acts[probe][layer, 1:, neuron]
    s = acts[seed][layer, 1:, neuron]
    x = f(a)
    best = 0
    for i in range(len(x)):
        if x[i] > x[best]:
            best = i
    peak = float(x[best])
    m = min(len(a), len(s))
    u, v = a[len(a) - m :], s[len(s) - m :]
    cos = float(np.dot(u, v) / (np.linalg.norm(u) * np.linalg.norm(v)))
    return {"pos": best + 1, "peak": peak, "signed": float(a[best]),
            "z": (peak - med) / scale, "density": sum(float(t) > q75 for t in x) / len(x),
            "sparsity": (peak - float(np.mean(x))) / peak if peak > 0 else float("nan"),
            "cos": cos}  # fmt: skip


@pytest.mark.parametrize("mode", ["abs", "signed"])
def test_probe_metrics_match_slow_reference(random_run: Any, mode: str) -> None:
    run, acts = random_run
    sel = parse_neuron_ids(",".join(f"{la}:{n}" for la, n in PAIRS))
    res = compute_signatures(run, "p0", sel, SignatureConfig(peak_mode=mode))
    pm = res.metrics
    assert pm.probes == [1, 2, 3, 4, 5]
    for row, probe in enumerate(pm.probes):
        for k, (layer, neuron) in enumerate(PAIRS):
            if probe == 4:  # BOS only: nothing to measure
                assert not pm.active[row, k] and np.isnan(pm.peak_value[row, k])
                continue
            ref = reference(acts, layer, neuron, probe, 0, mode)
            assert pm.peak_pos[row, k] == ref["pos"]
            assert pm.peak_value[row, k] == pytest.approx(ref["peak"], rel=1e-6)
            assert pm.peak_activation[row, k] == pytest.approx(ref["signed"], rel=1e-6)
            assert pm.robust_z[row, k] == pytest.approx(ref["z"], rel=1e-5)
            assert pm.density[row, k] == pytest.approx(ref["density"])
            assert pm.cosine_seed[row, k] == pytest.approx(ref["cos"], rel=1e-5)
            if pm.active[row, k]:
                assert pm.sparsity[row, k] == pytest.approx(ref["sparsity"], rel=1e-5)
            tok = run.prompts[probe].tokens[ref["pos"]]
            assert pm.peak_functional[row, k] == (pm.active[row, k] and is_functional(tok))


def test_gather_streams_the_run_once(random_run: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    run, acts = random_run
    calls = []
    original = run.iter_blocks

    def counting() -> Any:
        calls.append(1)
        return original()

    monkeypatch.setattr(run, "iter_blocks", counting)
    layers, neurons = np.array([la for la, _ in PAIRS]), np.array([n for _, n in PAIRS])
    cols = gather_columns(run, layers, neurons)
    assert len(calls) == 1
    assert cols.values.shape == (run.n_tokens, len(PAIRS))
    for i in range(run.n_prompts):
        for k, (layer, neuron) in enumerate(PAIRS):
            np.testing.assert_array_equal(cols.prompt(i)[:, k], acts[i][layer, 1:, neuron])
    assert cols.scored_rows().sum() == run.n_tokens - run.n_prompts


@pytest.mark.parametrize(
    ("tokens", "concept", "expected"),
    [
        (["\u2581Dallas", "\u2581is", "\u2581located", "\u2581in", "\u2581Texas"], "located in",
         [0, 0, 1, 1, 0]),
        (["\u2581of", "\u2581Sacr", "amento"], "Sacramento", [0, 1, 1]),
        (["\u2581the", "\u2581states"], "state", [0, 0]),
        (["\u2581TEXAS", ",", "\u2581texas"], "Texas", [1, 0, 1]),
        (["\u2581Austin"], None, [0]),
        (["\u2581Aus", "tin", "\u2581Austin"], "Austin", [1, 1, 1]),
    ],
)  # fmt: skip
def test_concept_span_matching(tokens: list[str], concept: str | None, expected: list) -> None:
    assert concept_span_mask(tokens, concept).astype(int).tolist() == expected


def _tables_for(tmp_path: Path, tokens: list[str], cfg: SignatureConfig) -> Any:
    run = write_run(tmp_path / "r", prompts=[{"probe_id": "p", "text": "x", "tokens": tokens,
                                              "token_ids": list(range(len(tokens)))}],
                    acts=[np.zeros((1, len(tokens), 1), np.float32)], model_name="s",
                    save_dtype="fp32")  # fmt: skip
    return token_tables(run, [0], cfg, skip=1)


def test_say_targets_follow_the_token_direction(tmp_path: Path) -> None:
    toks = ["<bos>", "\u2581Austin", "\u2581is", "\u2581the", "\u2581capital", ",",
            "\u2581of", "\u2581Texas", "\u2581entity", "\u2581is"]  # fmt: skip
    cfg = SignatureConfig(say_x_window=2)
    tables = _tables_for(tmp_path, toks, cfg)
    target = say_targets(tables.prompts[0].key_ids, tables, cfg).tolist()
    # "is"(1) -> forward skips "the" -> "capital"(3); "the"(2) -> "capital"; ","(4) both ways:
    # "capital"(3) at distance 1 backward; "of"(5) -> "Texas"(6); final "is"(8): "entity" is
    # blacklisted and nothing follows -> -1
    assert target[1] == 3 and target[2] == 3 and target[4] == 3 and target[5] == 6
    assert target[8] == -1
    wide = SignatureConfig(say_x_window=1)
    tables = _tables_for(tmp_path / "w", toks, wide)
    assert say_targets(tables.prompts[0].key_ids, tables, wide)[1] == -1  # "the" in the way


def test_cosine_of_zero_pattern_is_nan() -> None:
    a = np.array([[1.0, 0.0], [2.0, 0.0]])
    b = np.array([[2.0, 1.0], [4.0, 1.0]])
    out = cosine_columns(a, b)
    assert out[0] == pytest.approx(1.0) and np.isnan(out[1])


@pytest.mark.parametrize("how", ["left", "resample"])
def test_other_alignments(random_run: Any, how: str) -> None:
    run, acts = random_run
    res = compute_signatures(run, "p0", parse_neuron_ids("1:0"),
                             SignatureConfig(cosine_alignment=how))  # fmt: skip
    a, s = acts[3][1, 1:, 0], acts[0][1, 1:, 0]  # probe p3 (7 tokens), seed p0 (6 tokens)
    if how == "left":
        u, v = a[:5], s
    else:  # seed resampled onto 6 points
        u, v = a, np.interp(np.linspace(0, 4, 6), np.arange(5), s)
    cos = np.dot(u, v) / (np.linalg.norm(u) * np.linalg.norm(v))
    assert res.metrics.cosine_seed[2, 0] == pytest.approx(cos, rel=1e-5)


def test_gather_on_a_layer_subset_in_bf16(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    prompts = [{"probe_id": f"p{i}", "text": "x", "token_ids": [0, 1, 2], "tokens": WORDS[:3]}
               for i in range(3)]  # fmt: skip
    acts = [rng.normal(size=(2, 3, 4)).astype(np.float32) for _ in prompts]
    run = write_run(tmp_path / "r", prompts=prompts, acts=acts, layers=[3, 7], n_layers=12,
                    save_dtype="bf16", prompts_per_shard=2)  # fmt: skip
    cols = gather_columns(run, np.array([7, 3, 7]), np.array([1, 2, 3]))
    for i in range(3):
        expected = np.stack([run.prompt_neuron(i, 7, 1), run.prompt_neuron(i, 3, 2),
                             run.prompt_neuron(i, 7, 3)], axis=1)[1:]  # fmt: skip
        np.testing.assert_array_equal(cols.prompt(i), expected)
