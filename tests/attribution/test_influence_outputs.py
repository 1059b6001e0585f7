"""Influence outputs: one file per prompt whatever its id, truncated runs, the model's prediction
in the meta and on screen, and what ``analyze`` prints."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch

from neuron_signatures.analysis.tables import prompt_file_id, prompt_file_ids
from neuron_signatures.cli import main
from tests.tiny_models import exact_dump_args

ODD_IDS = {
    "seed_prompt": "The capital of the state containing Dallas is",
    "東京": "The capital of Texas is",
    "大阪": "The largest city of Texas is",
    "Q: a?": "hello world foo",
    "Q: a!": "hello world bar",
    "Q_a": "foo bar baz",  # the slug the two above share, as a plain id
    "case": "The state of Texas",
    "CASE": "The city of Texas",  # equal to "case" on a case-insensitive file system
}


def _dump(tmp_path: Path, model_dir: Path, prompts: dict[str, str], *extra: str) -> Path:
    src = tmp_path / "prompts.json"
    src.write_text(json.dumps([{"id": k, "text": v} for k, v in prompts.items()]))
    out = tmp_path / "run"
    assert main(["dump", *exact_dump_args(src, out, model_dir), *extra]) == 0
    return out


def _influence(run: Path, out: Path, *extra: str) -> int:
    return main(
        ["analyze", "--mode", "influence", "--run_dir", str(run), "--out_dir", str(out), *extra]
    )


def test_prompt_file_ids_are_distinct_and_readable() -> None:
    names = prompt_file_ids(ODD_IDS)
    assert names["seed_prompt"] == "seed_prompt" and names["Q_a"] == "Q_a"
    assert re.fullmatch(r"Q_a-[0-9a-f]{8}", names["Q: a?"])
    assert re.fullmatch(r"id-[0-9a-f]{8}", names["東京"])
    assert names["Q: a?"] == prompt_file_id("Q: a?")  # no clash: the id's own name
    assert names["case"] != names["CASE"] and "-" in names["case"]
    assert len({n.casefold() for n in names.values()}) == len(ODD_IDS)
    assert all(re.fullmatch(r"[A-Za-z0-9_.-]+", n) for n in names.values())
    long = "x" * 65
    assert prompt_file_id(long).startswith("x" * 40 + "-")  # long ids are cut and hashed
    # One hex digit collides among 40 ids: the clashing ones get longer hashes until none clash.
    ids = ["p" + "!" * i for i in range(1, 41)]  # one slug, "p"
    short = prompt_file_ids(ids, n_hex=1)
    assert len(set(short.values())) == 40
    assert {len(n.split("-")[1]) for n in short.values()} > {1}
    assert short == prompt_file_ids(ids, n_hex=1)  # deterministic


def test_influence_all_prompts_never_share_a_file(
    tmp_path: Path, tiny_model_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = _dump(tmp_path, tiny_model_dir, ODD_IDS)
    out = tmp_path / "a"
    rc = _influence(
        run, out, "--prompt_id", "all", "--influence_metric", "dla", "--target_mode", "last_token"
    )
    assert rc == 0
    docs = [json.loads(p.read_text()) for p in out.glob("influence_*[0-9].json")]
    assert sorted(d["prompt_id"] for d in docs) == sorted(ODD_IDS)
    assert len(list(out.glob("influence_*_meta.json"))) == len(ODD_IDS)
    assert len(list(out.glob("influence_*.csv"))) == len(ODD_IDS)
    assert len(list(out.glob("influence_seed_prompt_dla_last_token_pos*_tok*.csv"))) == 1
    printed = capsys.readouterr().out
    assert all(f"{pid}: target " in printed for pid in ODD_IDS)


def test_influence_on_a_truncated_run_scores_the_stored_tokens(
    tmp_path: Path, tiny_model_dir: Path, prompts_file: Path
) -> None:
    from neuron_signatures.store import open_run

    prompts = {p["id"]: p["text"] for p in json.loads(prompts_file.read_text())}
    run = _dump(tmp_path, tiny_model_dir, prompts, "--max_seq_len", "4", "--truncate")
    out = tmp_path / "a"
    assert _influence(run, out, "--prompt_id", "all", "--verify_top", "3") == 0
    stored = {p.probe_id: p for p in open_run(run).prompts}
    metas = [json.loads(p.read_text()) for p in out.glob("influence_*_meta.json")]
    assert sorted(m["prompt_id"] for m in metas) == sorted(prompts)
    for m in metas:
        p = stored[m["prompt_id"]]
        assert m["seq_len"] == p.seq_len == min(4, len(p.text.split()) + 1)
        assert m["target_pos"] == p.seq_len - 1
        assert m["truncated_at_dump"] == (len(p.text.split()) + 1 > 4)
        assert m["activation_check"]["max_abs_diff"] < 1e-4  # the stored tokens were run


def _reference_probs(model_dir: Path, ids: list[int], pos: int) -> torch.Tensor:
    from transformers import AutoModelForCausalLM

    ref = AutoModelForCausalLM.from_pretrained(model_dir, attn_implementation="eager").eval()
    with torch.no_grad():
        return torch.softmax(ref(torch.tensor([ids])).logits[0, pos].double(), -1)


def test_influence_reports_and_prints_the_models_prediction(
    tiny_run: Path, tiny_model_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from neuron_signatures.store import open_run

    args = ["--prompt_id", "seed_prompt", "--target_mode", "next_token", "--target_token", "Texas"]
    assert _influence(tiny_run, tmp_path, *args, "--verify_top", "5") == 0
    lines = capsys.readouterr().out.splitlines()
    (path,) = tmp_path.glob("influence_seed_prompt_act_grad_next_token_pos8_tok*[0-9].json")
    doc = json.loads(path.read_text())
    meta = json.loads(path.with_name(path.stem + "_meta.json").read_text())
    p = open_run(tiny_run).prompt("seed_prompt")
    probs = _reference_probs(tiny_model_dir, p.token_ids, 8)  # plain transformers, no bridge
    tid = doc["target_token_id"]
    assert doc["target_prob"] == meta["target_prob"] == pytest.approx(float(probs[tid]), rel=1e-5)
    assert meta["target_rank"] == int((probs > probs[tid]).sum()) + 1 == doc["target_rank"]
    top = probs.topk(5)
    assert [t["token_id"] for t in meta["top_tokens"]] == top.indices.tolist()
    want = top.values.tolist()
    assert [t["prob"] for t in meta["top_tokens"]] == pytest.approx(want, rel=1e-5)
    assert lines[0].startswith("seed_prompt: target 'Texas' (id ")
    assert f"p={meta['target_prob']:.3f}, rank {meta['target_rank']}" in lines[0]
    assert lines[1].startswith("  model's top 5 there: ") and lines[1].count(" | ") == 4
    assert [int(re.match(r"  #(\d+) ", x).group(1)) for x in lines[2:12]] == list(range(1, 11))
    assert re.fullmatch(
        r"  verify_top 5: spearman=-?\d\.\d{3} sign_agreement=\d\.\d{3}", lines[12]
    ), lines[12]
    assert lines[13] == f"  -> {path} (+ .csv, .parquet, _meta.json)"


def test_write_scores_prints_a_neuron_table(
    tiny_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _influence(tiny_run, tmp_path, "--prompt_id", "short") == 0
    (src,) = tmp_path.glob("influence_short_*.csv")
    capsys.readouterr()
    args = ["--from", str(src), "--run_dir", str(tiny_run), "--out_dir", str(tmp_path)]
    args += ["--top_n", "12", "--explicit_tokens", "Austin|Austin Texas"]
    assert main(["analyze", "--mode", "write_scores", *args]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith(f"scored 12 neurons of {src.name} (15 tokens per side) -> ")
    assert len(lines) == 11  # the first 10 neurons
    top = json.loads(src.with_suffix(".json").read_text())["records"][0]
    label = f"L{top['layer']}/N{top['neuron']}"
    assert lines[1].startswith(f"  #1    {label:<12} promotes ")
    assert re.search(r"promotes ('[^']*' [+-]\S+, ){2}'[^']*' [+-]\S+  suppresses ", lines[1])
    assert lines[1].endswith("'Austin Texas' n/a")


@pytest.mark.parametrize("mode", ["peaks", "influence", "write_scores"])
def test_run_dir_that_is_a_file_says_so(
    tiny_run: Path, mode: str, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tiny_run / "manifest.json"
    extra = ["--from", str(path)] if mode == "write_scores" else []
    rc = main(["analyze", "--mode", mode, "--run_dir", str(path), *extra])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1, err
    assert "is a file, not a run folder" in err and f"--run_dir {tiny_run})" in err
    assert "Traceback" not in err
