"""The corpus check of signature names: each rule on hand-built atlas records with known answers,
the record reader, the model check, and ``signatures --atlas`` end to end on a tiny model."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from neuron_signatures.analysis.results import load_signatures
from neuron_signatures.atlas import Example, NeuronAtlas, NeuronStats, WriteScore, open_atlas
from neuron_signatures.cli import main
from neuron_signatures.signatures.corpus_check import (
    CORPUS_FIELDS,
    DENSE_MAX,
    MIN_PEAK_SHARE,
    CorpusCounts,
    NameCheck,
    NameClaim,
    check_record,
    claim_from_record,
    judge,
    model_mismatch,
    token_key,
)

N_TOP = 20


def example(token: str, value: float = 1.0) -> Example:
    return Example(window=0, position=2, document=0, doc_token=1, value=value,
                   token_ids=[2, 7, 9], tokens=["<bos>", "▁in", token])  # fmt: skip


def record(
    top: list[str],
    frac_positive: float = 0.5,
    write_top: list[str] | None = None,
    bottom: list[str] | None = None,
    write_bottom: list[str] | None = None,
) -> NeuronAtlas:
    """A neuron whose top (bottom) examples peak on ``top`` (``bottom``), padded to 20 with
    unrelated tokens, with the given density and promoted (suppressed) tokens."""

    def pad(toks: list[str]) -> list[Example]:
        toks = toks + [f"▁filler{i}" for i in range(N_TOP - len(toks))]
        return [example(t) for t in toks]

    def scores(toks: list[str] | None) -> list[WriteScore]:
        return [WriteScore(t, 100 + i, 10.0 - i) for i, t in enumerate(toks or [])]

    stats = NeuronStats(count=30000, mean=0.0, variance=1.0, std=1.0, min=-3.0, max=3.0,
                        frac_positive=frac_positive, frac_above_threshold=0.1,
                        threshold=0.1)  # fmt: skip
    return NeuronAtlas(7, 3, stats, [], [], pad(top), pad(bottom or []), [],
                       scores(write_top), scores(write_bottom))  # fmt: skip


def claim(cls: str = "semantic", token: str = "Texas", side: int = 1,
          write_rank: int | None = None) -> NameClaim:  # fmt: skip
    return NameClaim(7, 3, cls, token, side, write_rank)


TEN = [f"▁w{i}" for i in range(10)]  # an atlas list of 10 promoted tokens without Texas


def test_constants_are_the_documented_ones() -> None:
    assert MIN_PEAK_SHARE == 0.25 and DENSE_MAX == 0.90


def test_peak_share_supports_and_is_normalised() -> None:
    # 5 of 20 peaks (case, whitespace and ▁ differ): exactly the quarter needed
    rec = record(["▁Texas", "Texas", " texas", "TEXAS", "▁Texas"], write_top=TEN)
    c = judge(claim(), rec, count=300)
    assert c.supported is True and c.peak_hits == 5 and c.n_examples == 20
    assert c.peak_share == 0.25 and c.density == 0.5 and c.write_rank is None
    assert c.reason == "'Texas' peaks 5 of 20 top examples (needs 5; occurs 300 times)"
    c4 = judge(claim(), record(["▁Texas"] * 4, write_top=TEN), count=300)
    assert c4.supported is False  # 4 of 20, not dense, not promoted, occurs: not supported
    assert c4.reason == (
        "'Texas' peaks 4 of 20 top examples (needs 5; occurs 300 times); "
        "'Texas' is not among the 10 tokens the atlas keeps as most promoted"
    )
    assert c4.describe().startswith("corpus check: ✗ not supported: 'Texas' peaks 4 of 20")


def test_a_rare_token_needs_only_the_examples_it_can_fill() -> None:
    rec = record(["▁Texas"], write_top=TEN)
    c = judge(claim(), rec, count=2)  # 1 hit of the 2 it could fill: needs ceil(0.5) = 1
    assert c.reason == "'Texas' peaks 1 of 20 top examples (needs 1; occurs 2 times)"
    assert c.supported is True
    assert judge(claim(), rec, count=4).supported is True  # needs ceil(1.0) = 1
    c5 = judge(claim(), rec, count=5)  # needs ceil(1.25) = 2
    assert c5.supported is False and "(needs 2; occurs 5 times)" in c5.reason
    assert "(needs 1; occurs 1 time)" in judge(claim(), record([]), count=1).reason


def test_dense_neurons_are_not_token_specific() -> None:
    rec = record([], frac_positive=0.98, write_top=["▁Texas", *TEN])
    c = judge(claim("relationship", "Springfield"), rec, count=0)
    assert c.supported is False and c.density == pytest.approx(0.98)
    assert c.reason == (
        "98% of corpus tokens positive (dense: > 90%); 'Springfield' does not occur in the "
        "atlas's corpus"
    )
    # promoted #1 does not rescue a dense neuron ...
    assert judge(claim("relationship"), rec, count=40).supported is False
    # ... but a dominant peak share does: the top of the neuron is about Texas
    assert judge(claim(), record(["▁Texas"] * 10, frac_positive=0.98), count=40).supported
    # the bar is strict: exactly 90% is not dense
    at_bar = judge(claim("relationship"), record([], 0.90, write_top=["▁Texas"]), count=40)
    assert at_bar.supported is True and at_bar.reason == (
        "'Texas' is promoted #1 in the atlas's list (<= 20)"
    )


def test_a_negative_neuron_reads_its_bottom_side() -> None:
    rec = record(["▁Texas"] * 10, frac_positive=0.97, bottom=["▁Texas"] * 5,
                 write_top=["▁Texas"], write_bottom=TEN)  # fmt: skip
    c = judge(claim(side=-1), rec, count=100)
    # density on the negative side is 1 - 0.97; the bottom examples hold 5 Texas peaks
    assert c.supported is True and c.peak_hits == 5 and c.density == pytest.approx(0.03)
    assert "bottom examples" in c.reason
    c2 = judge(claim("relationship", side=-1), record([], 0.97, bottom=[],
               write_top=["▁Texas"], write_bottom=TEN), count=100)  # fmt: skip
    assert c2.write_rank is None and c2.supported is False  # write_top is the other side


def test_untested_when_the_corpus_lacks_the_token() -> None:
    c = judge(claim(token="Springfield"), record([], write_top=TEN), count=0)
    assert c.supported is None and c.verdict == "untested"
    assert c.reason.startswith("'Springfield' does not occur in the atlas's corpus")
    assert c.describe().startswith("corpus check: ? untested:")


def test_say_x_rests_on_the_write_rank() -> None:
    rec = record(["▁is"] * 20, frac_positive=0.99, write_top=["▁foo", "▁Austin", *TEN])
    exact = judge(claim("say_x", "Austin", write_rank=3), rec, count=0)
    assert exact.supported is True and exact.write_rank == 3 and exact.write_rank_exact
    assert exact.reason == "'Austin' is promoted #3 (<= 20)"  # density does not matter
    far = judge(claim("say_x", "Austin", write_rank=41233), rec, count=5)
    assert far.supported is False and far.reason == "'Austin' is promoted #41,233 (> 20)"
    listed = judge(claim("say_x", "Austin"), rec, count=5)
    assert listed.supported is True and listed.write_rank == 2 and not listed.write_rank_exact
    # not in an atlas list of 12 < 20: the rank could still be 13..20
    missing = judge(claim("say_x", "Paris"), rec, count=5)
    assert missing.supported is None and missing.write_rank is None
    assert judge(claim("say_x", "Paris"), rec, count=5, top_n=10).supported is False
    none = judge(claim("say_x", "Paris"), record([]), count=5)
    assert none.supported is None and "the atlas has none" in none.reason


def test_fields_round_trip() -> None:
    c = judge(claim(), record(["▁Texas"] * 6), count=50)
    f = c.fields()
    assert list(f) == list(CORPUS_FIELDS)
    assert f["corpus_supported"] is True and f["corpus_peak_share"] == 0.3
    back = NameCheck.from_fields(json.loads(json.dumps(f)))
    assert back is not None and back.supported is True and back.reason == c.reason
    assert back.density == 0.5 and back.corpus_count == 50
    assert NameCheck.from_fields({"class": "semantic"}) is None  # a file without the check


def probe(token: str, act: float, kind: str = "semantic", say: str | None = None) -> dict:
    return {"peak_token": token, "peak_activation": act, "peak_kind": kind, "say_target": say}


def test_claim_from_record() -> None:
    rec = {"layer": 4, "neuron": 9, "class": "semantic", "name": "Texas",
           "semantic_token": "Texas", "relation_token": "Dallas", "say_target": None,
           "probes": [probe(" Texas", -2.0), probe(" Texas", -1.0), probe(" the", 9.0),
                      probe("", 0.0, "none")]}  # fmt: skip
    c = claim_from_record(rec)
    # side: the probes peaking on Texas fire negative (the 9.0 on "the" did not vote)
    assert c == NameClaim(4, 9, "semantic", "Texas", -1, None)
    rel = claim_from_record({**rec, "class": "relationship", "name": "(Dallas) related"})
    assert rel is not None and rel.token == "Dallas" and rel.side == 1  # every active probe
    say = claim_from_record({**rec, "class": "say_x", "name": "Say (Austin)",
                             "say_target": "Austin", "say_x_write_rank": 7,
                             "probes": [probe(" is", -3.0, "functional", "Austin")]})  # fmt: skip
    assert say == NameClaim(4, 9, "say_x", "Austin", -1, 7)
    assert claim_from_record({**rec, "class": "unclassified", "name": None}) is None
    assert claim_from_record({"layer": 1, "neuron": 2, "class": "semantic", "name": "x"}) is None
    assert claim_from_record(None) is None


def test_model_mismatch() -> None:
    run = {
        "model_name": "m",
        "n_layers": 26,
        "d_mlp": 8,
        "model": {"kind": "local", "location": "/a", "revision": "r1", "vocab_size": 9},
    }
    atlas = {"model": {"name": "m", "n_layers": 26, "d_mlp": 8,
                       "source": {"kind": "hub", "location": "/b", "revision": "r1"}}}  # fmt: skip
    assert model_mismatch(run, atlas) is None  # where the weights came from does not matter
    assert model_mismatch({**run, "model_name": "other"}, atlas) == "model other (run) vs m (atlas)"
    atlas["model"]["source"]["revision"] = "r2"
    assert model_mismatch(run, atlas) == "revision r1 (run) vs r2 (atlas)"
    assert model_mismatch({"model_name": "m", "n_layers": 26, "d_mlp": 8}, atlas) is None


# ---- end to end: signatures --atlas on a tiny model ------------------------------------------


@pytest.fixture(scope="module")
def tiny_atlas(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An atlas of the tiny model folder the session's ``tiny_run`` was dumped with, over a
    corpus made of the run's own prompt words (so named tokens occur)."""
    from tests.atlas.conftest import corpus_lines
    from tests.conftest import PROMPT_TEXTS

    folder = tmp_path_factory.mktemp("corpus_check")
    corpus = folder / "corpus.txt"
    corpus.write_text("\n".join([*PROMPT_TEXTS.values(), *corpus_lines(30)]) + "\n")
    out = folder / "atlas"
    rc = main(["atlas", "--model_name", str(tiny_model_dir), "--corpus", str(corpus),
               "--out_dir", str(out), "--ctx_len", "12", "--top_k", "6", "--write_scores_k",
               "8", "--batch_size", "6", "--no_progress", "--device", "cpu",
               "--model_dtype", "fp32"])  # fmt: skip
    assert rc == 0
    return out


def _signatures(run: Path, out: Path, *extra: str) -> int:
    every = ",".join(f"{layer}:{n}" for layer in (0, 1, 2) for n in range(64))
    return main(["signatures", "--run_dir", str(run), "--neuron_ids", every,
                 "--out_dir", str(out), "--name", "c", "--no_write_check", *extra])  # fmt: skip


def test_signatures_with_an_atlas_marks_every_name(
    tiny_run: Path, tiny_atlas: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _signatures(tiny_run, tmp_path, "--atlas", str(tiny_atlas)) == 0
    out = capsys.readouterr().out
    sigs = load_signatures(tmp_path)
    named = {k: s for k, s in sigs.items() if s["name"]}
    assert named, "the tiny run names no neuron: the test checks nothing"
    atlas = open_atlas(tiny_atlas)
    verdicts = []
    for (layer, n), s in named.items():
        check = NameCheck.from_fields(s)
        assert check is not None and s["corpus_reason"]
        verdicts.append(check.verdict)
        # independently: the share of the atlas's examples (on the name's side) peaking on X
        c = claim_from_record(s)
        assert c is not None
        rec = atlas.neuron(layer, n)
        side = rec.top if c.side > 0 else rec.bottom
        x = token_key(c.token)
        hits = sum(token_key(e.tokens[e.position]) == x for e in side)
        assert s["corpus_peak_share"] == pytest.approx(hits / len(side))
        frac = rec.stats.frac_positive
        assert s["corpus_density"] == pytest.approx(frac if c.side > 0 else 1 - frac)
        assert check_record(atlas, s) == judge(c, rec, CorpusCounts.of(atlas)(c.token))
        mark = {"supported": "✓", "not supported": "✗", "untested": "?"}[check.verdict]
        assert f"[corpus {mark} {check.verdict}: {s['corpus_reason']}]" in out
    for s in sigs.values():
        if not s["name"]:
            assert all(s[f] is None for f in CORPUS_FIELDS)
    held = verdicts.count("supported")
    assert (f"Corpus check (atlas {tiny_atlas}): {held} of {len(named)} names hold, "
            f"{verdicts.count('not supported')} not supported, "
            f"{verdicts.count('untested')} untested") in out  # fmt: skip
    doc = json.loads((tmp_path / "signatures_c.json").read_text())
    assert doc["format_version"] == 2
    meta = json.loads((tmp_path / "signatures_c_meta.json").read_text())
    assert meta["corpus_check"]["status"] == "checked"
    assert meta["corpus_check"]["counts"]["supported"] == held
    table = pd.read_parquet(tmp_path / "signatures_c.parquet")
    assert set(CORPUS_FIELDS) <= set(table.columns)
    assert table["corpus_reason"].notna().sum() == len(named) * table["probe_id"].nunique()
    nodes = json.loads((tmp_path / "supernodes_c.json").read_text())["supernodes"]
    assert all("corpus_supported" in m for s in nodes for m in s["members"])


def test_counts_match_the_windows(tiny_atlas: Path) -> None:
    atlas = open_atlas(tiny_atlas)
    counts = CorpusCounts.of(atlas)
    words: dict[str, int] = {}
    for w in range(atlas.manifest["windows"]["n_windows"]):
        for t in atlas.window_ids(w):
            k = token_key(atlas.token(t))
            words[k] = words.get(k, 0) + 1
    assert words and all(counts(k) == n for k, n in words.items())
    assert counts("no-such-token") == 0


def test_without_an_atlas_nothing_is_checked(
    tiny_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _signatures(tiny_run, tmp_path) == 0
    assert "Corpus check" not in capsys.readouterr().out
    sigs = load_signatures(tmp_path)
    assert all(s[f] is None for s in sigs.values() for f in CORPUS_FIELDS)
    meta = json.loads((tmp_path / "signatures_c_meta.json").read_text())
    assert meta["corpus_check"] == {"status": "skipped"}


def test_an_atlas_of_another_model_is_refused_first(
    tiny_run: Path, atlas_lm: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from tests.atlas.conftest import build, corpus_lines

    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(corpus_lines(8)) + "\n")
    other = build(atlas_lm, tmp_path / "other", corpus, write_scores_k=0)  # tiny-gemma2 by name
    rc = _signatures(tiny_run, tmp_path / "out", "--atlas", str(other))
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1 and "Traceback" not in err
    assert f"the atlas {other} was not built with the run's model (model " in err
    assert "neuron-signatures atlas --model_name" in err
    assert not (tmp_path / "out").exists()  # refused before anything was computed


def test_html_export_shows_the_stored_check() -> None:
    from neuron_signatures.export.html import signature_html

    check = judge(claim("relationship", "Springfield"), record([], 0.98), count=0)
    sig = {"layer": 7, "neuron": 3, "class": "relationship", "name": "(Springfield) related",
           **check.fields()}  # fmt: skip
    html = signature_html(sig)
    assert "corpus check: ✗ not supported: 98% of corpus tokens positive (dense: &gt; 90%)" in html
    assert "corpus check" not in signature_html({**sig, "corpus_reason": None})  # unchecked
