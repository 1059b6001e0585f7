"""A hub id without network fails in seconds with one line; a cached hub id still loads offline."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from neuron_signatures.cli import main
from neuron_signatures.models import specs
from neuron_signatures.models.specs import hub_offline_reason

ROOT = Path(__file__).resolve().parents[2]
PROMPTS = ROOT / "docs" / "probe_prompts_list.json"
OFFLINE_VARS = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
ADDRESS_VARS = ("HF_ENDPOINT", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY")


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in OFFLINE_VARS}
    env.pop("TRANSFORMERS_VERBOSITY", None)  # the quietness must not come from the test setup
    return {**env, "PYTHONPATH": str(ROOT), **extra}


def _dump(env: dict[str, str], out: Path, model: str, *flags: str) -> tuple[int, str, float]:
    argv = ["--prompts_json", str(PROMPTS), "--out_dir", str(out), "--model_name", model]
    t0 = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "neuron_signatures", "dump", *argv, *flags],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    return proc.returncode, proc.stderr, time.perf_counter() - t0


@pytest.mark.parametrize("offline_var", [None, "1"])
def test_unknown_hub_model_fails_fast(tmp_path: Path, offline_var: str | None) -> None:
    """Without HF_HUB_OFFLINE the real hub host is probed (here: no network); with it, no probe.
    Before the fix: ~45 lines of retry noise over ~30-50 s."""
    env = _env(**({"HF_HUB_OFFLINE": offline_var} if offline_var else {}))
    rc, err, seconds = _dump(env, tmp_path / "out", "someone/not-a-model")
    lines = err.splitlines()
    assert rc == 2 and len(lines) == 1 and lines[0].startswith("error: "), err
    assert "someone/not-a-model" in lines[0]
    assert seconds < 15


def test_unknown_hub_model_in_process(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    for var in OFFLINE_VARS:
        monkeypatch.delenv(var, raising=False)
    t0 = time.perf_counter()
    argv = ["dump", "--prompts_json", str(PROMPTS), "--out_dir", str(tmp_path / "o")]
    rc = main([*argv, "--model_name", "someone/not-a-model", "--no_progress"])
    _, err = capfd.readouterr()
    assert rc == 2 and len(err.splitlines()) == 1 and err.startswith("error: "), err
    assert time.perf_counter() - t0 < 15


def test_offline_variables_decide_without_probing(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_probe(*_: object) -> bool:
        raise AssertionError("probed the network")

    monkeypatch.setattr(specs, "_can_connect", no_probe)
    for var in OFFLINE_VARS:
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "yes")
    assert hub_offline_reason() == "TRANSFORMERS_OFFLINE is set"
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert hub_offline_reason() == "HF_HUB_OFFLINE is set"
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")  # explicitly online: trust it, no probe
    assert hub_offline_reason() is None


def test_probe_is_bounded_when_the_network_hangs(monkeypatch: pytest.MonkeyPatch) -> None:
    """A connect (or name lookup) that never answers costs the timeout, not the OS's minutes."""
    for var in (*OFFLINE_VARS, *ADDRESS_VARS):
        monkeypatch.delenv(var, raising=False)
    release = threading.Event()

    def hang(*_: object, **__: object) -> None:
        release.wait(30)
        raise OSError("timed out")

    monkeypatch.setattr(socket, "create_connection", hang)
    t0 = time.perf_counter()
    try:
        reason = hub_offline_reason(timeout=0.3)
    finally:
        release.set()
    assert reason is not None and "huggingface.co:443" in reason
    assert time.perf_counter() - t0 < 2


def test_probe_targets(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ADDRESS_VARS:
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("no_proxy", "")
    assert specs._hub_address() == ("huggingface.co", 443, True)
    monkeypatch.setenv("HF_ENDPOINT", "http://mirror.example:8080/")
    assert specs._hub_address() == ("mirror.example", 8080, False)
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.example:3128")
    monkeypatch.setenv("HF_ENDPOINT", "https://huggingface.co")
    assert specs._hub_address() == ("proxy.example", 3128, False)  # reachable through the proxy
    monkeypatch.setenv("no_proxy", "huggingface.co")
    assert specs._hub_address() == ("huggingface.co", 443, True)
    # a port nobody listens on: refused at once
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    assert not specs._can_connect("127.0.0.1", port, False, 1.0)


def test_cached_hub_model_loads_offline(tmp_path: Path) -> None:
    """A hub id already in the Hugging Face cache dumps without network and without retries."""
    from tests.tiny_models import exact_dump_args, save_model_folder

    cache = tmp_path / "hub"
    commit = "0" * 40
    repo = cache / "models--someone--tiny-gemma2"
    save_model_folder("gemma2", repo / "snapshots" / commit)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    with socket.socket() as s:  # an endpoint that refuses: offline whatever the real network
        s.bind(("127.0.0.1", 0))
        endpoint = f"https://127.0.0.1:{s.getsockname()[1]}"
    env = _env(HF_HUB_CACHE=str(cache), HF_ENDPOINT=endpoint)
    args = exact_dump_args(PROMPTS, tmp_path / "run", Path("someone/tiny-gemma2"))
    out = tmp_path / "run"
    proc = subprocess.run(
        [sys.executable, "-m", "neuron_signatures", "dump", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert "Retrying" not in proc.stderr and (out / "manifest.json").is_file()
