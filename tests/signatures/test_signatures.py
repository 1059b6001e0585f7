"""Signatures on hand-built activation patterns whose class and name are known; files; CLI."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from neuron_signatures.analysis.results import list_rankings, load_signatures
from neuron_signatures.cli import main
from neuron_signatures.errors import BadArgumentError
from neuron_signatures.signatures.compute import (
    PROBE_COLUMNS,
    SignatureResult,
    compute_signatures,
    write_signatures,
)
from neuron_signatures.signatures.config import (
    SignatureConfig,
    explicit_selection,
    parse_neuron_ids,
)
from neuron_signatures.store import Run
from neuron_signatures.store.build import write_run

N_LAYERS, D_MLP = 26, 6  # the published depth: early <= 3, late >= 7
SEED = ("seed_prompt", "The capital of the state containing Dallas is")
PROBES = [
    ("probe_0_Dallas", "entity : A city in Texas , USA is Dallas"),
    ("probe_1_Austin", "entity : The capital city of Texas is Austin"),
    ("probe_2_Texas", "entity : The state containing Dallas is Texas"),
    ("probe_3_Houston", "entity : The largest city in Texas is Houston"),
    ("probe_7_located_in", "relationship : Dallas is located in Texas"),
]
# (layer, neuron) of each hand-built neuron
TEXAS, RELATION, SAY_AUSTIN, AMBIGUOUS, DEAD, DIFFUSE_TEXAS = (
    (2, 0), (10, 1), (20, 2), (12, 3), (5, 4), (1, 5),
)  # fmt: skip
AMBIGUOUS_PEAKS = {"probe_0_Dallas": "city", "probe_1_Austin": "capital",
                   "probe_2_Texas": "state", "probe_3_Houston": "largest",
                   "probe_7_located_in": "Dallas"}  # fmt: skip


def pieces(text: str) -> list[str]:
    """Word-level pieces: SentencePiece-style leading ``▁`` except on the first word and on
    punctuation; BOS first."""
    words = text.split()
    out = ["<bos>"]
    for i, w in enumerate(words):
        out.append(w if i == 0 or w in (":", ",") else "\u2581" + w)
    return out


def pattern(pid: str, words: list[str]) -> np.ndarray:
    """``[N_LAYERS, seq, D_MLP]`` activations of one prompt (words without ``▁``, BOS first)."""
    a = np.zeros((N_LAYERS, len(words), D_MLP), np.float32)
    a[:, 0] = 50.0  # BOS is huge and must be ignored everywhere
    a[TEXAS[0], 0, TEXAS[1]] = 50.0
    w = np.array(words, object)
    a[TEXAS[0], 1:, TEXAS[1]] = np.select([w[1:] == "Texas", w[1:] == "The"], [5.0, 0.5], 0.0)
    rel = {"containing": 1.5, "located": 1.4, "in": 1.4, "of": 1.4}
    a[RELATION[0], 1:, RELATION[1]] = [rel.get(t, 1.0) for t in w[1:]]
    is_pos = [i for i, t in enumerate(words) if t == "is"]
    a[SAY_AUSTIN[0], is_pos, SAY_AUSTIN[1]] = 6.0 if pid == "probe_1_Austin" else 4.0
    if pid in AMBIGUOUS_PEAKS:
        a[AMBIGUOUS[0], words.index(AMBIGUOUS_PEAKS[pid]), AMBIGUOUS[1]] = 3.0
    a[DEAD[0], :, DEAD[1]] = 0.0
    a[DIFFUSE_TEXAS[0], 1:, DIFFUSE_TEXAS[1]] = np.where(w[1:] == "Texas", 1.6, 1.0)
    return a


def build_run(folder: Path, prompts: list[tuple[str, str]], **extra: Any) -> Run:
    recs, acts = [], []
    for pid, text in prompts:
        toks = pieces(text)
        recs.append({"probe_id": pid, "text": text, "token_ids": list(range(len(toks))),
                     "tokens": toks, **extra.get(pid, {})})  # fmt: skip
        acts.append(pattern(pid, [t.lstrip("\u2581") for t in toks]))
    return write_run(folder, prompts=recs, acts=acts, model_name="synthetic",
                     save_dtype="fp32", prompts_per_shard=2)  # fmt: skip


@pytest.fixture(scope="module")
def hand_run(tmp_path_factory: pytest.TempPathFactory) -> Run:
    return build_run(tmp_path_factory.mktemp("sig") / "run", [SEED, *PROBES])


ALL = [TEXAS, RELATION, SAY_AUSTIN, AMBIGUOUS, DEAD, DIFFUSE_TEXAS]


@pytest.fixture(scope="module")
def result(hand_run: Run) -> SignatureResult:
    sel = parse_neuron_ids(",".join(f"{la}:{n}" for la, n in ALL))
    return compute_signatures(hand_run, "seed_prompt", sel)


def at(res: SignatureResult, neuron: tuple[int, int]) -> int:
    return ALL.index(neuron)


def test_clean_entity_detector_is_semantic_texas(result: SignatureResult) -> None:
    k = at(result, TEXAS)
    agg = result.aggregates
    assert result.classification.classes[k] == "semantic"
    assert result.classification.names[k] == "Texas"
    assert agg.peak_consistency[k] == 1.0 and agg.n_distinct_peaks[k] == 1
    assert agg.func_vs_sem[k] == 0.0
    # Wilson lower bound of 5 hits in 5 probes containing Texas: 5 / (5 + 1.96^2)
    assert agg.semantic_confidence[k] == pytest.approx(5 / (5 + 1.96**2))
    # declared concepts: only probe_2 (concept Texas) peaks on its own concept
    assert result.metrics.on_concept[:, k].tolist() == [False, False, True, False, False]
    assert agg.concept_hit_rate[k] == pytest.approx(1 / 5)


def test_diffuse_relation_neuron_is_relationship(result: SignatureResult) -> None:
    k = at(result, RELATION)
    assert result.classification.classes[k] == "relationship"
    assert result.classification.names[k] == "(containing) related"
    assert result.aggregates.median_sparsity[k] < 0.45
    assert result.aggregates.n_distinct_peaks[k] == 4  # in, of, containing, located


def test_say_x_neuron_peaks_on_is_before_the_concept(result: SignatureResult) -> None:
    k = at(result, SAY_AUSTIN)
    agg = result.aggregates
    assert result.classification.classes[k] == "say_x"
    assert result.classification.names[k] == "Say (Austin)"
    assert agg.func_vs_sem[k] == 1.0 and agg.functional_confidence[k] == 1.0
    targets = [result.tables.display[t] for t in result.metrics.say_target_key[:, k]]
    assert targets == ["Dallas", "Austin", "Texas", "Houston", "located"]


def test_ambiguous_neuron_is_unclassified_with_reasons(result: SignatureResult) -> None:
    k = at(result, AMBIGUOUS)
    assert result.classification.classes[k] == "unclassified"
    assert result.classification.names[k] is None
    reasons = " | ".join(result.classification.reasons[k])
    assert "semantic: n_distinct_peaks 5 > 1" in reasons
    assert "say_x: func_vs_sem 0.00 < 0.5" in reasons
    # one spike among n tokens: sparsity 1 - 1/n; median over n = 10, 9, 8, 9, 7 is 1 - 1/9
    assert "relationship: median_sparsity 0.89 >= 0.45" in reasons


def test_neuron_that_never_activates(result: SignatureResult) -> None:
    k = at(result, DEAD)
    assert result.classification.classes[k] == "unclassified"
    assert "never activates" in result.classification.reasons[k][0]
    assert not result.metrics.active[:, k].any()
    assert np.isnan(result.metrics.sparsity[:, k]).all()
    assert np.isnan(result.metrics.cosine_seed[:, k]).all()  # zero pattern: undefined


def test_two_matching_classes_resolved_by_alignment_score(result: SignatureResult) -> None:
    k = at(result, DIFFUSE_TEXAS)
    cls = result.classification
    # passes Semantic (early layer, always on Texas) and Relationship (diffuse): Semantic's
    # alignment (1.0) beats Relationship's ((0.45 - sparsity) / 0.45)
    assert cls.classes[k] == "semantic" and cls.names[k] == "Texas"
    assert cls.scores[0, k] == pytest.approx(1.0)
    sparsity = result.aggregates.median_sparsity[k]
    assert cls.scores[2, k] == pytest.approx((0.45 - sparsity) / 0.45)
    assert any(r.startswith("also matched relationship") for r in cls.reasons[k])


def test_bos_is_ignored(result: SignatureResult) -> None:
    assert (result.metrics.peak_pos > 0).all()
    assert np.nanmax(result.metrics.peak_value) < 50.0


def _texas_at(folder: Path, probes: list[tuple[str, str]], late: tuple[int, int]) -> Run:
    """A run whose neuron ``late`` repeats the early Texas detector's pattern exactly."""
    recs, acts = [], []
    for pid, text in [SEED, *probes]:
        toks = pieces(text)
        recs.append({"probe_id": pid, "text": text, "token_ids": list(range(len(toks))),
                     "tokens": toks})  # fmt: skip
        a = pattern(pid, [t.lstrip("\u2581") for t in toks])
        a[late[0], :, late[1]] = a[TEXAS[0], :, TEXAS[1]]
        acts.append(a)
    return write_run(folder, prompts=recs, acts=acts, save_dtype="fp32")


def test_layer_decides_semantic_when_evidence_is_weak(tmp_path: Path) -> None:
    # 3 probes, all containing Texas, all peaking on it: consistent (1.0) but weak evidence
    # (Wilson lower bound 3 / (3 + 1.96^2) = 0.44): the early copy passes on its layer alone,
    # the late copy of the very same pattern needs the evidence and does not have it
    late = (12, 0)
    run = _texas_at(tmp_path / "weak", PROBES[:3], late)
    res = compute_signatures(run, "seed_prompt", parse_neuron_ids(f"2:0,{late[0]}:{late[1]}"))
    agg, cls = res.aggregates, res.classification
    assert agg.peak_consistency.tolist() == [1.0, 1.0] and agg.n_distinct_peaks.tolist() == [1, 1]
    assert agg.semantic_confidence == pytest.approx([3 / (3 + 1.96**2)] * 2)
    assert cls.classes == ["semantic", "unclassified"] and cls.names == ["Texas", None]
    assert "semantic: layer 2 <= 3 (early)" in cls.reasons[0]
    assert "semantic: layer 12 > 3 (not early) and semantic_confidence 0.44 < 0.5" in cls.reasons[1]
    # 5 of 5 probes (0.57) is enough evidence for the late layer too
    strong = _texas_at(tmp_path / "strong", PROBES, late)
    res = compute_signatures(strong, "seed_prompt", parse_neuron_ids(f"{late[0]}:{late[1]}"))
    assert res.classification.names == ["Texas"]
    assert "semantic: semantic_confidence 0.57 >= 0.5" in res.classification.reasons[0]


def test_late_layer_threshold_blocks_say_x(hand_run: Run) -> None:
    cfg = SignatureConfig(late_layer_min=21)
    res = compute_signatures(hand_run, "seed_prompt", parse_neuron_ids("20:2"), cfg)
    assert res.classification.classes == ["unclassified"]
    assert "say_x: layer 20 < 21 (not late)" in res.classification.reasons[0]


def test_blacklisted_name_is_refused(hand_run: Run) -> None:
    cfg = SignatureConfig(blacklist=("texas",))
    res = compute_signatures(hand_run, "seed_prompt", parse_neuron_ids("2:0"), cfg)
    assert res.classification.classes == ["unclassified"]
    assert "semantic: semantic peak token 'Texas' is blacklisted" in res.classification.reasons[0]


def test_probe_without_its_concept_and_single_probe(tmp_path: Path) -> None:
    extra = {"probe_x": {"concept": "Austin", "concept_type": "entity"}}
    run = build_run(tmp_path / "r", [SEED, ("probe_x", "entity : Dallas is in Texas")], **extra)
    res = compute_signatures(run, "seed_prompt", explicit_selection("2", "0"))
    assert res.metrics.concept_present.tolist() == [False]
    assert np.isnan(res.aggregates.concept_hit_rate[0])  # no probe contains its concept
    assert res.classification.classes == ["semantic"]  # one probe, on Texas
    assert res.tables.prompts[1].concept_type == "entity"


def test_weak_probes_do_not_vote(tmp_path: Path) -> None:
    sacramento = ("probe_8_Sacramento", "entity : The capital city of California is Sacramento")
    run = build_run(tmp_path / "r", [SEED, PROBES[1], sacramento])
    res = compute_signatures(run, "seed_prompt", parse_neuron_ids("2:0"))
    # no Texas in probe 8: the detector's 0.5 on "The" is under half its 5.0 peak
    assert res.metrics.active[:, 0].tolist() == [True, False]
    assert res.classification.names == ["Texas"]
    everyone = compute_signatures(run, "seed_prompt", parse_neuron_ids("2:0"),
                                  SignatureConfig(min_peak_ratio=0.0))  # fmt: skip
    assert everyone.aggregates.n_distinct_peaks.tolist() == [2]
    assert everyone.classification.classes == ["unclassified"]


def test_concept_type_and_concept_from_id_and_prefix(result: SignatureResult) -> None:
    p7 = result.tables.prompts[5]
    assert p7.concept == "located in" and p7.concept_type == "relationship"
    assert p7.concept_mask.tolist() == [False, False, False, False, True, True, False]


def test_probe_selection_and_errors(hand_run: Run) -> None:
    res = compute_signatures(hand_run, "seed_prompt", parse_neuron_ids("2:0"),
                             probes=["probe_1_Austin", "probe_2_Texas"])  # fmt: skip
    assert res.metrics.probes == [2, 3]
    with pytest.raises(BadArgumentError, match="out of range"):
        compute_signatures(hand_run, "seed_prompt", parse_neuron_ids("2:99"))
    with pytest.raises(BadArgumentError, match="not in this run"):
        compute_signatures(hand_run, "seed_prompt", parse_neuron_ids("30:1"))
    with pytest.raises(BadArgumentError, match="no prompt with id"):
        compute_signatures(hand_run, "nope", parse_neuron_ids("2:0"))


def test_written_files_follow_the_format(hand_run: Run, result: SignatureResult,
                                         tmp_path: Path) -> None:  # fmt: skip
    files = write_signatures(hand_run, result, out_dir=tmp_path, inputs={"x": 1})
    names = sorted(p.name for p in files)
    stem = f"seed_prompt_{result.selection.tag}"
    assert names == sorted([f"signatures_{stem}.json", f"signatures_{stem}.csv",
                            f"signatures_{stem}.parquet", f"supernodes_{stem}.json",
                            f"signatures_{stem}_meta.json"])  # fmt: skip
    doc = json.loads((tmp_path / f"signatures_{stem}.json").read_text())
    assert doc["format_version"] == 2 and doc["kind"] == "signatures"
    first = doc["neurons"][0]
    assert {"layer", "neuron", "class", "name", "reasons", "probes", "seed", "say_x_token",
            "say_x_write_rank", "say_x_write_agrees"} <= set(first)  # fmt: skip
    assert "say_x_token" not in first["probes"][0]  # per neuron, not per probe
    assert len(first["probes"]) == len(PROBES)
    assert first["probes"][2]["peak_token"] == " Texas" and first["probes"][2]["on_concept"]
    sigs = load_signatures(tmp_path)
    assert sigs[SAY_AUSTIN]["name"] == "Say (Austin)" and sigs[DEAD]["class"] == "unclassified"
    assert [r.kind for r in list_rankings(tmp_path)] == ["signatures"]
    import pandas as pd

    table = pd.read_parquet(tmp_path / f"signatures_{stem}.parquet")
    assert list(table.columns) == list(PROBE_COLUMNS) and len(table) == len(ALL) * len(PROBES)
    nodes = json.loads((tmp_path / f"supernodes_{stem}.json").read_text())["supernodes"]
    texas = next(n for n in nodes if n["name"] == "Texas")
    assert texas["layers"] == [1, 2] and texas["n_members"] == 2
    meta = json.loads((tmp_path / f"signatures_{stem}_meta.json").read_text())
    assert meta["thresholds"]["late_layer_min_resolved"] == 7 and meta["inputs"] == {"x": 1}


def _influence_json(folder: Path) -> Path:
    recs = [{"rank": i + 1, "layer": la, "neuron": n, "influence": v, "ctx_idx": 8,
             "activation": 1.0, "token_ascii": " is"}
            for i, ((la, n), v) in enumerate([(SAY_AUSTIN, 3.0), (TEXAS, -2.0),
                                              (DIFFUSE_TEXAS, 0.5)])]  # fmt: skip
    p = folder / "influence_seed_prompt_dla_top1_logit_pos8_tok1.json"
    p.write_text(json.dumps({"format_version": 1, "kind": "influence", "records": recs}))
    return p


def test_cli_end_to_end_with_influence_file(
    hand_run: Run, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    src = _influence_json(tmp_path)
    out = tmp_path / "out"
    rc = main(["signatures", "--run_dir", str(hand_run.run_dir), "--neurons", str(src),
               "--top_n", "3", "--out_dir", str(out), "--no_write_check"])  # fmt: skip
    assert rc == 0
    printed = capsys.readouterr().out
    assert "Say (Austin)" in printed and "Say X write check: skipped" in printed
    # the tag already names the seed: it is not repeated
    assert (out / "signatures_influence_seed_prompt_dla_top1_logit_pos8_tok1_top3.json").is_file()
    sigs = load_signatures(out)
    assert sigs[SAY_AUSTIN]["influence"] == 3.0 and sigs[TEXAS]["class"] == "semantic"
    assert sigs[SAY_AUSTIN]["say_x_token"] == "Austin" and sigs[TEXAS]["say_x_token"] is None
    assert sigs[SAY_AUSTIN]["say_x_write_rank"] is None  # skipped
    nodes = json.loads(next(out.glob("supernodes_*.json")).read_text())["supernodes"]
    assert nodes[0]["name"] == "Say (Austin)"  # largest |influence| first
    texas = next(n for n in nodes if n["name"] == "Texas")
    assert texas["influence"] == pytest.approx(-1.5)


def test_cli_explicit_lists_csv_only(hand_run: Run, tmp_path: Path) -> None:
    rc = main(["signatures", "--run_dir", str(hand_run.run_dir), "--layer_list", "2",
               "--neuron_list", "0", "--out_dir", str(tmp_path), "--name", "one",
               "--no_parquet", "--probes", "probe_2_Texas"])  # fmt: skip
    assert rc == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "signatures_one.csv", "signatures_one.json", "signatures_one_meta.json",
        "supernodes_one.json"]  # fmt: skip
    assert load_signatures(tmp_path)[TEXAS]["probes"][0]["probe_id"] == "probe_2_Texas"


def test_cli_errors_are_one_line(hand_run: Run, tmp_path: Path,
                                 capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    rd = str(hand_run.run_dir)
    assert main(["signatures", "--run_dir", rd]) == 2
    assert "give the neurons" in capsys.readouterr().err
    assert main(["signatures", "--run_dir", rd, "--neurons", str(tmp_path / "no.json")]) == 2
    assert "does not exist" in capsys.readouterr().err
    bad = tmp_path / "bad.toml"
    bad.write_text("semantic_peak_consistency = 'high'\n")
    assert main(["signatures", "--run_dir", rd, "--neuron_ids", "2:0", "--config", str(bad)]) == 2
    assert "wrong type" in capsys.readouterr().err
