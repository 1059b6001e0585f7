"""Peaks mode: streamed, vectorised statistics against a slow reference loop; selection; files."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from neuron_signatures.analysis.peaks import (
    AGGREGATED_COLUMNS,
    aggregate_peaks,
    column_mode,
    compute_prompt_peaks,
    segment_peaks,
)
from neuron_signatures.analysis.peaks_report import run_peaks
from neuron_signatures.analysis.selection import (
    Selection,
    cumulative_count,
    make_selection,
    select,
)
from neuron_signatures.cli import main
from neuron_signatures.errors import BadArgumentError
from neuron_signatures.store import open_run
from neuron_signatures.store.build import write_run
from neuron_signatures.tokens import is_functional

WORDS = ["<bos>", " the", " cat", " sat", ",", " on", " mat", " Austin"]


def _prompts_and_acts(rng: np.random.Generator, lengths: list[int], n_layers: int, d: int) -> Any:
    prompts, acts = [], []
    for i, n in enumerate(lengths):
        ids = [0, *rng.integers(1, len(WORDS), n - 1).tolist()]
        prompts.append(
            {
                "probe_id": f"p{i}",
                "text": f"t{i}",
                "token_ids": ids,
                "tokens": [WORDS[t].replace(" ", "\u2581") for t in ids],
            }
        )
        # small integer grid: ties and negative peaks are frequent
        a = rng.integers(-3, 4, size=(n_layers, n, d)).astype(np.float32)
        a[:, 0] *= 100.0  # BOS is huge
        acts.append(a)
    return prompts, acts


def reference(prompts: list[dict], acts: list[np.ndarray], include_bos: bool) -> dict:
    """Slow, obviously-correct loop over layers, neurons and prompts."""
    n_layers, _, d = acts[0].shape
    out: dict[str, list] = {c: [] for c in AGGREGATED_COLUMNS}
    for layer in range(n_layers):
        for n in range(d):
            pk, sg, pos, tok, func = [], [], [], [], []
            total, count = 0.0, 0
            for p, a in zip(prompts, acts, strict=True):
                start = 0 if include_bos else 1
                col = a[layer, start:, n]
                if len(col) == 0:
                    continue
                best = max(range(len(col)), key=lambda i: (abs(col[i]), -i))
                pk.append(abs(col[best]))
                sg.append(col[best])
                pos.append(best + start)
                tok.append(p["token_ids"][best + start])
                func.append(is_functional(p["tokens"][best + start]))
                total += float(col.sum())
                count += len(col)

            def mode(v: list) -> tuple:
                c = Counter(v)
                top = max(c.values())
                return min(k for k in c if c[k] == top), top, len(c)

            mt, mtc, nut = mode(tok)
            mp, mpc, nup = mode(pos)
            row = dict(
                layer=layer,
                neuron=n,
                mean_peak_abs=np.mean(pk),
                std_peak_abs=np.std(pk),
                max_peak_abs=max(pk),
                min_peak_abs=min(pk),
                frac_peak_functional=np.mean(func),
                mode_peak_token_id=mt,
                mode_peak_token_ascii=WORDS[mt],
                mode_peak_token_count=mtc,
                n_unique_peak_token_id=nut,
                mode_peak_ctx_idx=mp,
                mode_peak_ctx_count=mpc,
                n_unique_peak_ctx_idx=nup,
                mean_peak_signed=np.mean(sg),
                std_peak_signed=np.std(sg),
                max_peak_signed=max(sg),
                min_peak_signed=min(sg),
                frac_peak_positive=np.mean(np.array(sg) > 0),
                mean_act=total / count,
                n_prompts=len(pk),
            )
            for k, v in row.items():
                out[k].append(v)
    return out


@pytest.mark.parametrize("include_bos", [False, True])
@pytest.mark.parametrize("lengths", [[5, 1, 7, 3, 4, 6], [4]])
def test_peaks_equal_slow_reference(tmp_path: Path, include_bos: bool, lengths: list[int]) -> None:
    rng = np.random.default_rng(len(lengths))
    prompts, acts = _prompts_and_acts(rng, lengths, n_layers=2, d=6)
    run = write_run(tmp_path / "run", prompts, acts, prompts_per_shard=4)
    got = aggregate_peaks(run, compute_prompt_peaks(run, include_bos=include_bos))
    want = reference(prompts, acts, include_bos)
    for col in AGGREGATED_COLUMNS:
        if col == "mode_peak_token_ascii":
            assert list(got[col]) == want[col], col
        else:
            np.testing.assert_allclose(
                np.asarray(got[col], float), want[col], rtol=1e-6, atol=1e-6, err_msg=col
            )


def test_bos_excluded_by_default_changes_peaks(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    prompts, acts = _prompts_and_acts(rng, [4, 5], n_layers=1, d=3)
    run = write_run(tmp_path / "run", prompts, acts)
    off = aggregate_peaks(run, compute_prompt_peaks(run))
    on = aggregate_peaks(run, compute_prompt_peaks(run, include_bos=True))
    assert (off["mode_peak_ctx_idx"] >= 1).all()
    assert (on["mode_peak_ctx_idx"] == 0).all() and (on["mean_peak_abs"] >= 100).all()


def test_bos_only_run_refused(tmp_path: Path) -> None:
    rng = np.random.default_rng(4)
    prompts, acts = _prompts_and_acts(rng, [1, 1], n_layers=1, d=3)
    run = write_run(tmp_path / "run", prompts, acts)
    with pytest.raises(BadArgumentError, match="include_bos"):
        compute_prompt_peaks(run)


def test_segment_peaks_ties_and_negative() -> None:
    x = np.array([[1.0, -2.0], [-1.0, 2.0], [3.0, 0.0], [-3.0, 0.0]], np.float32)
    pa, ps, first = segment_peaks(x, np.array([0, 2]))
    np.testing.assert_array_equal(pa, [[1, 2], [3, 0]])
    np.testing.assert_array_equal(ps, [[1, -2], [3, 0]])  # first occurrence wins the tie
    np.testing.assert_array_equal(first, [[0, 0], [2, 2]])


def test_column_mode_ties_smallest() -> None:
    v = np.array([[5, 1], [3, 1], [5, 2], [3, 2]])
    mode, count, uniq = column_mode(v)
    assert mode.tolist() == [3, 1] and count.tolist() == [2, 2] and uniq.tolist() == [2, 2]


@pytest.mark.parametrize(
    ("t", "want"),
    [(-1.0, 0), (0.0, 0), (0.5, 1), (0.51, 2), (0.8, 2), (0.95, 3), (0.96, 4), (1.0, 4), (2.0, 4)],
)
def test_cumulative_count(t: float, want: int) -> None:
    assert cumulative_count(np.array([5.0, 3.0, 1.5, 0.5]), t) == want


def test_cumulative_edge_cases() -> None:
    assert cumulative_count(np.zeros(4), 0.5) == 0
    assert cumulative_count(np.zeros(0), 0.5) == 0
    sel = select(np.array([1.0, 3.0, 3.0, 2.0]), Selection("top_k", top_k=3))
    assert sel.tolist() == [1, 2, 3]  # stable ties
    assert make_selection(None, None).top_k == 200
    assert make_selection(5, 0.8).mode == "cumulative"
    with pytest.raises(BadArgumentError):
        make_selection(-1, None)


def test_run_peaks_files(tmp_path: Path) -> None:
    rng = np.random.default_rng(5)
    prompts, acts = _prompts_and_acts(rng, [5, 6, 7], n_layers=2, d=8)
    run_dir = tmp_path / "run"
    write_run(run_dir, prompts, acts)
    res = run_peaks(run_dir, make_selection(5, None))
    out = run_dir / "analysis"
    import pandas as pd

    csv = pd.read_csv(out / "neurons_aggregated.csv")
    assert list(csv.columns)[:14] == list(AGGREGATED_COLUMNS)[:14] and len(csv) == 16
    assert len(pd.read_parquet(out / "neurons_aggregated.parquet")) == 16
    top = json.loads((out / "top_neurons_top5.json").read_text())
    assert top["kind"] == "top_neurons" and [r["rank"] for r in top["neurons"]] == [1, 2, 3, 4, 5]
    scores = [r["mean_peak_abs"] for r in top["neurons"]]
    assert scores == sorted(scores, reverse=True) and scores[0] == csv["mean_peak_abs"].max()
    run_peaks(run_dir, make_selection(None, 0.5), include_bos=True)
    assert (out / "top_neurons_top5.json").is_file() and (
        out / "top_neurons_cum0.5_bos.json"
    ).is_file()
    latest = json.loads((out / "top_neurons.json").read_text())
    assert latest["selection"]["tag"] == "cum0.5_bos"
    meta = json.loads((out / "analysis_meta.json").read_text())
    assert meta["format_version"] == 1 and meta["args"] == {} and meta["include_bos"] is True
    assert len(res.selected) == 5


def test_cli_peaks_and_shim(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from neuron_signatures import poc2_analyze_run
    from neuron_signatures.analysis.results import list_rankings

    rng = np.random.default_rng(6)
    prompts, acts = _prompts_and_acts(rng, [5, 6], n_layers=2, d=4)
    run_dir = tmp_path / "run"
    write_run(run_dir, prompts, acts)
    assert main(["analyze", "--run_dir", str(run_dir), "--top_k", "3"]) == 0
    fn = tmp_path / "func.json"
    fn.write_text(json.dumps(["cat"]))
    assert (
        poc2_analyze_run.main(
            [
                "--run_dir",
                str(run_dir),
                "--cumulative_threshold",
                "0.8",
                "--functional_tokens_json",
                str(fn),
                "--out_dir",
                str(tmp_path / "o"),
            ]
        )
        == 0
    )
    meta = json.loads((tmp_path / "o" / "analysis_meta.json").read_text())
    assert meta["functional_tokens"] == ["cat"] and meta["args"]["cumulative_threshold"] == 0.8
    kinds = {r.kind for r in list_rankings(run_dir / "analysis")}
    assert kinds == {"top_neurons"}
    fn.write_text("{}")
    assert main(["analyze", "--run_dir", str(run_dir), "--functional_tokens_json", str(fn)]) == 2
    assert main(["analyze", "--run_dir", str(tmp_path / "nope")]) == 2
    err = capsys.readouterr().err
    assert err.count("error:") == 2 and all(len(x) > 0 for x in err.strip().splitlines())


def test_prototype_run_folder_gives_the_same_table(tmp_path: Path) -> None:
    """A prototype run (manifest + activations.pt, one block per prompt) streams the same."""
    from neuron_signatures.store.legacy import export_legacy_pt

    rng = np.random.default_rng(7)
    prompts, acts = _prompts_and_acts(rng, [5, 3, 6], n_layers=2, d=4)
    run = write_run(tmp_path / "run", prompts, acts)
    export_legacy_pt(run, "fp32")
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    manifest = {k: v for k, v in manifest.items() if k != "shards"}
    manifest.update(format_version=1, activations_file="activations.pt")
    (tmp_path / "run" / "manifest.json").write_text(json.dumps(manifest))
    legacy = open_run(tmp_path / "run")
    assert type(legacy).__name__ == "_LegacyRun"
    got = aggregate_peaks(legacy, compute_prompt_peaks(legacy))
    want = reference(prompts, acts, include_bos=False)
    np.testing.assert_allclose(got["mean_peak_abs"], want["mean_peak_abs"], rtol=1e-6)
    assert got["mode_peak_ctx_idx"].tolist() == want["mode_peak_ctx_idx"]


def _random_run(tmp_path: Path, n_prompts: int, n_layers: int, d: int, seed: int) -> Any:
    """Random lengths (some BOS-only), real-valued and integer-grid activations, many shards."""
    rng = np.random.default_rng(seed)
    lengths = rng.integers(1, 12, n_prompts).tolist()
    prompts, acts = _prompts_and_acts(rng, lengths, n_layers, d)
    for i in range(0, n_prompts, 2):  # half real-valued (few ties), half integer grid (many)
        acts[i] = rng.standard_normal(acts[i].shape).astype(np.float32) * 10
    return write_run(tmp_path / "run", prompts, acts, prompts_per_shard=5)


@pytest.mark.parametrize("include_bos", [False, True])
@pytest.mark.parametrize("chunk", [None, 1, 3, 8, 10_000])
def test_peaks_bit_identical_to_old_implementation(
    tmp_path: Path, include_bos: bool, chunk: int | None
) -> None:
    """Every column, value and dtype equal to the pre-fix implementation, whatever the chunk."""
    from tests.analysis.old_peaks import old_peaks_table

    run = _random_run(tmp_path, n_prompts=23, n_layers=3, d=7, seed=11)  # 21 neurons: odd
    got = aggregate_peaks(run, compute_prompt_peaks(run, include_bos), chunk=chunk)
    want = old_peaks_table(run, include_bos)
    assert list(got) == list(AGGREGATED_COLUMNS)
    for col in AGGREGATED_COLUMNS:
        assert got[col].dtype == want[col].dtype, col
        np.testing.assert_array_equal(got[col], want[col], err_msg=col, strict=True)


def test_compact_prompt_peaks(tmp_path: Path) -> None:
    """|peak| is exactly |signed peak|; per prompt×neuron only float32 + uint16 are kept."""
    x = np.array([[1.5, -2.0], [-3.25, 2.0], [0.0, -0.0]], np.float32)
    pa, ps, _ = segment_peaks(x, np.array([0, 2]))
    np.testing.assert_array_equal(np.abs(ps), pa, strict=True)
    run = _random_run(tmp_path, n_prompts=4, n_layers=2, d=3, seed=1)
    peaks = compute_prompt_peaks(run)
    assert (peaks.peak_signed.dtype, peaks.peak_pos.dtype) == (np.float32, np.uint16)
    assert peaks.peak_abs.dtype == np.float32 and (peaks.peak_abs >= 0).all()


def test_column_chunks_cover_and_never_leave_one_column() -> None:
    from neuron_signatures.analysis.peaks import column_chunks

    for n_cols in range(1, 40):
        for width in (None, 1, 2, 3, 7):
            chunks = column_chunks(n_cols, 5, width)
            assert [c for a, b in chunks for c in range(a, b)] == list(range(n_cols))
            assert n_cols == 1 or all(b - a >= 2 for a, b in chunks)
    assert len(column_chunks(26 * 9216, 1000)) > 16  # large runs: bounded working memory


def test_peaks_memory_per_prompt_neuron(tmp_path: Path) -> None:
    """Peak memory of the whole peaks computation (per-prompt pass + aggregation) stays at most
    16 bytes per prompt×neuron (the previous implementation: about 50)."""
    from tests.analysis.old_peaks import old_peaks_table, traced_peak

    rng = np.random.default_rng(12)
    n_prompts, n_layers, d = 600, 2, 512
    lengths = rng.integers(2, 10, n_prompts).tolist()
    ids = [[0, *rng.integers(1, 5000, n - 1).tolist()] for n in lengths]  # many distinct peaks
    prompts = [
        {"probe_id": f"p{i}", "text": "t", "token_ids": t, "tokens": [f"w{x}" for x in t]}
        for i, t in enumerate(ids)
    ]
    acts = [rng.standard_normal((n_layers, n, d), dtype=np.float32) for n in lengths]
    run = write_run(tmp_path / "run", prompts, acts, save_dtype="bf16", prompts_per_shard=16)
    run = open_run(run.run_dir)
    _ = run.prompts  # manifest parsing is not part of the aggregation
    table, peak = traced_peak(lambda: aggregate_peaks(run, compute_prompt_peaks(run)))
    per = peak / (n_prompts * n_layers * d)
    assert len(table["mean_peak_abs"]) == n_layers * d
    assert per <= 16, f"{per:.1f} bytes per prompt×neuron"
    _, old_peak = traced_peak(lambda: old_peaks_table(run))  # the measure sees the old cost
    assert old_peak / (n_prompts * n_layers * d) > 40
