"""``explain --explainer llm`` killed with ``kill -9`` mid-layer, then ``--resume``: the answers
committed to the response cache before the kill are not asked again, and the output is the
uninterrupted run's, byte for byte."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

from neuron_signatures.cli import main
from neuron_signatures.explain.client import ResponseCache
from tests.explain.fake_openai import Loopback, neuron_reader, serve
from tests.explain.test_llm_explain import files
from tests.explain.test_run import ROOT, cli_atlas  # noqa: F401 (the fixture)

KILL_AT = 150  # the server kills the child when this request arrives


def argv(atlas: Path, url: str, *extra: str) -> list[str]:
    return [
        "explain", "--atlas", str(atlas), "--explainer", "llm", "--base_url", url,
        "--model", "fake", "--concurrency", "8", "--layers", "0", "--n_random_tokens", "40",
        "--batch_size", "4", "--device", "cpu", *extra,
    ]  # fmt: skip


def test_kill_9_mid_layer_then_resume(cli_atlas: Path, tmp_path: Path) -> None:  # noqa: F811
    full, part = tmp_path / "full", tmp_path / "part"
    shutil.copytree(cli_atlas, full)
    shutil.copytree(cli_atlas, part)
    reader = neuron_reader()
    child: dict[str, Any] = {"pid": None, "n": 0}

    def answer(body: dict[str, Any]) -> Any:
        child["n"] += 1
        if child["pid"] is not None and child["n"] == KILL_AT:
            os.kill(child["pid"], signal.SIGKILL)
        return reader(body)

    with serve(Loopback(default=answer)) as srv:
        assert main(argv(full, srv.url)) == 0
        n_full = len(srv.seen)
        assert n_full > 2 * KILL_AT
        child["n"] = 0
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT)}
        proc = subprocess.Popen(
            [sys.executable, "-m", "neuron_signatures", *argv(part, srv.url)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        child["pid"] = proc.pid
        proc.wait(timeout=300)
        assert proc.returncode == -signal.SIGKILL
        out = part / "explanations-llm"
        assert not (out / "layers" / "layer_000.jsonl").exists()
        assert not json.loads((out / "explanations.json").read_text())["complete"]
        cache = ResponseCache(part / "llm-cache")  # opens after the kill: WAL recovered
        committed = len(cache.entries())
        cache.close()
        assert committed >= 64  # at least one batch of answers was committed before the kill
        child["pid"] = None
        n_before = len(srv.seen)
        assert main(argv(part, srv.url, "--resume")) == 0
        resent = len(srv.seen) - n_before
    log = json.loads((out / "run.json").read_text())["llm"]
    assert log["hits"] >= committed and resent == log["sent"]
    # nothing committed was asked again (a transport retry, e.g. a kept-alive connection the
    # server had closed, sends one question twice: count questions, not attempts)
    assert resent - log["retries"] <= n_full - committed
    assert files(part) == files(full)
