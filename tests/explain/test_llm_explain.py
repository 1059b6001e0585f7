"""The LLM explainer and simulation scorer against a loopback OpenAI server (127.0.0.1), on the
planted token detector's atlas."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from neuron_signatures.cli import main
from neuron_signatures.explain.llm_run import LLMSettings, read_llm_explanations, summary
from neuron_signatures.explain.records import score_lines
from tests.explain.conftest import PLANTED_LAYER, PLANTED_NEURON, PLANTED_WORD, explain
from tests.explain.fake_openai import (
    Loopback,
    classifier_kind,
    is_simulation,
    neuron_reader,
    serve,
    values,
)

LLM_KW: dict[str, Any] = dict(layers=[PLANTED_LAYER], n_random_tokens=120)


def run_llm(lm: Any, atlas: Path, url: str, **kw: Any) -> Path:
    run_kw = {k: kw.pop(k) for k in ("resume", "overwrite") if k in kw}
    settings = LLMSettings(base_url=url, model="fake", concurrency=8, **kw)
    return explain(lm, atlas, explainer="llm", llm=settings, **LLM_KW, **run_kw)


def planted(atlas: Path) -> dict[str, Any]:
    _, recs = read_llm_explanations(atlas)
    return next(r for r in recs if (r["layer"], r["neuron"]) == (PLANTED_LAYER, PLANTED_NEURON))


def files(atlas: Path) -> dict[str, bytes]:
    out = atlas / "explanations-llm"
    return {
        str(p.relative_to(out)): p.read_bytes()
        for p in sorted(out.rglob("*"))
        if p.is_file() and p.name != "run.json"
    }


@pytest.fixture
def atlas(planted_atlas: Path, tmp_path: Path) -> Path:
    root = tmp_path / "A"
    shutil.copytree(planted_atlas, root)
    return root


def test_llm_names_the_planted_token_scores_high_and_reruns_from_cache(
    planted_lm: Any, atlas: Path
) -> None:
    with serve(Loopback(default=neuron_reader(logprobs=True))) as srv:
        run_llm(planted_lm, atlas, srv.url)
        n_first = len(srv.seen)
        first = files(atlas)
        rec = planted(atlas)
        (side,) = rec["sides"]
        assert side["explainer"] == "llm" and side["side"] == "positive"
        assert side["simulated_with"] == ["top_logprobs"]
        assert side["explanation"] == f'the token "{PLANTED_WORD}"'
        assert side["scores"]["top_and_random"] >= 0.9
        assert side["scores"]["random_only"] >= 0.9
        assert side["floor"]["from_neuron"] != PLANTED_NEURON
        assert abs(side["floor"]["top_and_random"]) < 0.5
        assert side["heldout"]["tokens_random_only"] > 50
        check_classifiers(atlas, side, "logprobs")
        manifest, recs = read_llm_explanations(atlas)
        assert manifest["complete"]
        params = manifest["params"]["explainer"]
        assert params["name"] == "llm" and params["model"] == "fake"
        assert params["simulator_expected_value_from"] == "top_logprobs"
        assert len(recs) == 64 and not any("error" in r for r in recs)
        # the negative sides are classified on their own held-out (bottom) windows too
        neg = [sd for r in recs for sd in r["sides"] if sd["side"] == "negative"]
        assert neg and all(
            set(sd["classifiers"]["detection"]["windows"]["activating"])
            <= set(sd["heldout"]["example_windows"])
            for sd in neg
        )
        assert any(sd["classifiers"]["detection"]["n_windows"]["activating"] for sd in neg)
        sims = [r for r in srv.seen if "predict how it will fire" in str(r["body"])]
        assert sims and all(r["body"].get("top_logprobs") == 5 for r in sims)
        # the offline folder is untouched by the LLM run
        assert not (atlas / "explanations").exists()
        run_llm(planted_lm, atlas, srv.url, overwrite=True)
        assert len(srv.seen) == n_first  # the rerun sent nothing: every answer came from the cache
    assert files(atlas) == first
    log = json.loads((atlas / "explanations-llm" / "run.json").read_text())
    assert log["llm"]["hit_rate"] == 1.0 and log["llm"]["sent"] == 0


def test_json_simulator_and_delphi_prompts(
    planted_lm: Any, atlas: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with serve(Loopback(default=neuron_reader(logprobs=False))) as srv:
        run_llm(planted_lm, atlas, srv.url, prompt_format="delphi")
        assert any("[EXPLANATION]" in str(r["body"]) for r in srv.seen)
    manifest, _ = read_llm_explanations(atlas)
    assert manifest["params"]["explainer"]["simulator_expected_value_from"] == "json"
    (side,) = planted(atlas)["sides"]
    assert side["explanation"] == f'the token "{PLANTED_WORD}"'
    assert side["scores"]["top_and_random"] >= 0.9
    assert side["simulated_with"] == ["json"]
    check_classifiers(atlas, side, "parsed")
    lines = score_lines(side)
    assert any(x.startswith("detection: balanced accuracy 1.000") for x in lines)
    assert any("AUC unavailable (no logprobs)" in x for x in lines)
    capsys.readouterr()
    assert main(["neuron", "--atlas", str(atlas), f"L{PLANTED_LAYER}/N{PLANTED_NEURON}"]) == 0
    shown = capsys.readouterr().out.split("explanations-llm")[-1]
    assert "detection: balanced accuracy 1.000" in shown and "fuzzing: balanced accuracy" in shown
    check_version_1_still_reads(atlas)


def check_classifiers(atlas: Path, side: dict[str, Any], method: str) -> None:
    """Detection and fuzzing of the planted detector: perfect, on held-out windows only, with
    a floor from the donor's explanation; AUC only where the answers carried logprobs."""
    manifest, _ = read_llm_explanations(atlas)
    train = set(side["train_windows"])
    for kind in ("detection", "fuzzing"):
        c = side["classifiers"][kind]
        assert c["method"] == method and c["n_invalid"] == 0
        assert c["balanced_accuracy"] == 1.0
        assert (c["auc"] == 1.0) if method == "logprobs" else c["auc"] is None
        n = c["n_windows"]
        assert n["activating"] >= 2 and n["non_activating"] == n["activating"]
        act, quiet = c["windows"]["activating"], c["windows"]["non_activating"]
        assert set(act) <= set(side["heldout"]["example_windows"])
        assert set(quiet) <= set(manifest["random_windows"])
        assert not (set(act) | set(quiet)) & train
        fl = c["floor"]
        assert fl["from_neuron"] == side["floor"]["from_neuron"]
        assert fl["balanced_accuracy"] is not None  # detection's: chance on 2 + 2 windows
    # the donor names another token: no highlighted "Austin" matches it
    assert side["classifiers"]["fuzzing"]["floor"]["balanced_accuracy"] == 0.5


def check_version_1_still_reads(atlas: Path) -> None:
    """A folder of the first record version (no classifiers, no record_version) reads, shows
    the simulation scores, and a version from the future is refused with the fix."""
    from neuron_signatures.errors import RunFormatError
    from neuron_signatures.explain import records

    out = atlas / "explanations-llm"
    man = json.loads((out / "explanations.json").read_text())
    del man["params"]["explainer"]["record_version"]
    (out / "explanations.json").write_text(json.dumps(man))
    path = out / "layers" / "layer_000.jsonl"
    rows = [json.loads(x) for x in path.read_text().splitlines()]
    for r in rows:
        for sd in r["sides"]:
            sd.pop("classifiers", None)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    (side,) = planted(atlas)["sides"]
    expl = records.neuron_explanation(atlas, PLANTED_LAYER, PLANTED_NEURON, "explanations-llm")
    assert expl is not None and len(records.score_lines(expl.sides[0])) == 2
    assert "classifiers" not in side
    man["params"]["explainer"]["record_version"] = 9
    (out / "explanations.json").write_text(json.dumps(man))
    with pytest.raises(RunFormatError, match="--overwrite"):
        read_llm_explanations(atlas)


def test_completions_simulator_and_a_choice_of_scorers(planted_lm: Any, atlas: Path) -> None:
    """A server whose /completions echoes prompt logprobs: the simulator reads them (OpenAI's
    all-at-once method, nothing generated); an echo that cannot be aligned is asked through
    chat; only the scorers asked for are run."""
    reader = neuron_reader(logprobs=True, echo=True)

    def answer(body: dict[str, Any]) -> Any:
        status, headers, data = reply = reader(body)
        if "prompt" in body and is_simulation(body) and f'"{PLANTED_WORD}"' not in body["prompt"]:
            torn = json.loads(data)  # every other explanation's echo: its text cut short
            torn["choices"][0]["text"] = torn["choices"][0]["text"][:-9]
            return status, headers, json.dumps(torn).encode()
        return reply

    with serve(Loopback(default=answer)) as srv:
        run_llm(planted_lm, atlas, srv.url, scorers=("simulation", "detection"))
        comp = [r for r in srv.seen if r["path"] == "/v1/completions"]
        kinds = {classifier_kind(r["body"]) for r in srv.seen if "messages" in r["body"]}
    manifest, _ = read_llm_explanations(atlas)
    params = manifest["params"]["explainer"]
    assert params["simulator_expected_value_from"] == "prompt_logprobs"
    assert params["scorers"] == ["simulation", "detection"] and params["record_version"] == 2
    assert len(comp) > 10 and all(
        r["body"]["max_tokens"] == 1 for r in comp
    )  # 0: no limit on llama.cpp
    chat_sims = [r for r in srv.seen if "messages" in r["body"] and is_simulation(r["body"])]
    named = f'find the token "{PLANTED_WORD}"'
    assert chat_sims and not any(named in r["body"]["messages"][1]["content"] for r in chat_sims)
    assert "fuzzing" not in kinds and "detection" in kinds
    (side,) = planted(atlas)["sides"]
    assert side["simulated_with"] == ["prompt_logprobs"]
    assert side["scores"]["top_and_random"] >= 0.9 and side["scores"]["random_only"] >= 0.9
    assert set(side["classifiers"]) == {"detection"}
    _, recs = read_llm_explanations(atlas)
    assert not any("error" in r for r in recs)
    how = {(sd["explanation"] == side["explanation"], *sd["simulated_with"]) for r in recs
           for sd in r["sides"]}  # fmt: skip
    assert how == {(True, "prompt_logprobs"), (False, "top_logprobs")}  # mended through chat


def test_a_forced_simulator_method(
    planted_lm: Any, atlas: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``--simulator top_logprobs`` on a server that echoes: the chat path, no simulation on
    /completions; ``--simulator prompt_logprobs`` on a server that does not echo: one line, exit
    2, before anything is written."""
    with serve(Loopback(default=neuron_reader(logprobs=True, echo=True))) as srv:
        run_llm(planted_lm, atlas, srv.url, scorers=("simulation",), simulator="top_logprobs")
        sims = [r for r in srv.seen if r["path"] == "/v1/completions" and is_simulation(r["body"])]
    assert not sims
    manifest, _ = read_llm_explanations(atlas)
    assert manifest["params"]["explainer"]["simulator_expected_value_from"] == "top_logprobs"
    (side,) = planted(atlas)["sides"]
    assert side["simulated_with"] == ["top_logprobs"] and side["scores"]["top_and_random"] >= 0.9
    before = files(atlas)
    with serve(Loopback(default=neuron_reader(logprobs=True, echo=False))) as srv:
        args = _cli(atlas, "--base_url", srv.url, "--simulator", "prompt_logprobs", "--overwrite")
        assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert "--simulator auto" in err and "\n" not in err and "Traceback" not in err
    assert files(atlas) == before


def test_best_of_chooses_on_train_windows_only(planted_lm: Any, atlas: Path) -> None:
    with serve(Loopback(default=neuron_reader())) as srv:
        run_llm(planted_lm, atlas, srv.url, best_of=2)
    (side,) = planted(atlas)["sides"]
    bad, good = side["candidates"]  # seed 0 names the lowest-valued token
    assert good["explanation"] == side["explanation"] == f'the token "{PLANTED_WORD}"'
    assert bad["explanation"] != good["explanation"]
    assert good["validation_score"] > 0.9 > (bad["validation_score"] or 0.0)
    val = set(good["validation_windows"])
    assert val and val <= set(side["train_windows"])
    held = set(side["heldout"]["example_windows"])
    manifest, _ = read_llm_explanations(atlas)
    assert not val & held and not val & set(manifest["random_windows"])


def test_failed_neuron_is_recorded_and_resume_retries_only_it(planted_lm: Any, atlas: Path) -> None:
    reader = neuron_reader()
    refuse = {"on": True}

    def answer(body: dict[str, Any]) -> Any:
        if "prompt" in body:
            return reader(body)
        fires = {t for t, v in values(body) if v > 0}
        if refuse["on"] and not is_simulation(body) and fires == {PLANTED_WORD}:
            return 400, {"Content-Type": "application/json"}, b'{"error": "refused"}'
        return reader(body)

    with serve(Loopback(default=answer)) as srv:
        out = run_llm(planted_lm, atlas, srv.url)
        rec = planted(atlas)
        assert rec["sides"] == [] and "HTTP 400" in rec["error"]
        _, recs = read_llm_explanations(atlas)
        assert sum("error" in r for r in recs) == 1
        line = summary(out, [PLANTED_LAYER])
        assert line.startswith("1 neuron(s) failed (first L0/N5") and "--resume" in line
        assert "\n" not in line
        refuse["on"] = False
        n = len(srv.seen)
        run_llm(planted_lm, atlas, srv.url, resume=True)
        again = srv.seen[n:]
    assert again and all(PLANTED_WORD in str(r["body"]["messages"]) for r in again)
    (side,) = planted(atlas)["sides"]
    assert side["scores"]["top_and_random"] >= 0.9
    _, recs = read_llm_explanations(atlas)
    assert not any("error" in r for r in recs)


def test_server_gone_mid_run_stops_and_resume_finishes(planted_lm: Any, atlas: Path) -> None:
    from neuron_signatures.explain.client import LLMServerError

    reader = neuron_reader()
    down = {"on": True}

    def answer(body: dict[str, Any]) -> Any:
        if "prompt" in body:
            return reader(body)
        if down["on"] and body["messages"][-1]["content"] != "Say 0.":
            return 503, {"Content-Type": "application/json"}, b"{}"
        return reader(body)

    with serve(Loopback(default=answer)) as srv:
        with pytest.raises(LLMServerError, match="--resume"):
            run_llm(planted_lm, atlas, srv.url, max_retries=0)
        n_down = len(srv.seen)
        out = atlas / "explanations-llm"
        manifest = json.loads((out / "explanations.json").read_text())
        assert not manifest["complete"] and not (out / "layers" / "layer_000.jsonl").exists()
        # two probes, 4 × concurrency failures in a row, and the ones already in flight
        assert n_down <= 2 + 32 + 8
        down["on"] = False
        run_llm(planted_lm, atlas, srv.url, resume=True)
    (side,) = planted(atlas)["sides"]
    assert side["scores"]["top_and_random"] >= 0.9
    assert read_llm_explanations(atlas)[0]["complete"]


def _cli(atlas: Path, *extra: str) -> list[str]:
    return ["explain", "--atlas", str(atlas), "--explainer", "llm", "--model", "m", *extra]


@pytest.mark.parametrize(
    "extra, words",
    [
        ((), "--base_url"),
        (("--base_url", "http://127.0.0.1:9/v1", "--best_of", "0"), "--best_of"),
        (
            ("--base_url", "http://127.0.0.1:9/v1", "--api_key_env", "NS_TEST_UNSET_KEY"),
            "NS_TEST_UNSET_KEY",
        ),
        (("--base_url", "http://127.0.0.1:9/v1", "--max_retries", "0"), "unreachable"),
        (("--base_url", "http://127.0.0.1:9/v1", "--scorers", "simulation,intruder"), "--scorers"),
    ],
)
def test_bad_input_one_line_exit_2_nothing_lost(
    atlas: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    extra: tuple[str, ...],
    words: str,
) -> None:
    monkeypatch.delenv("NS_TEST_UNSET_KEY", raising=False)
    out = atlas / "explanations-llm"
    (out / "layers").mkdir(parents=True)
    (out / "layers" / "layer_000.jsonl").write_text("kept\n")
    assert main([*_cli(atlas, *extra), "--overwrite"]) == 2
    err = capsys.readouterr().err.strip()
    assert words in err and "\n" not in err and "Traceback" not in err
    assert (out / "layers" / "layer_000.jsonl").read_text() == "kept\n"
