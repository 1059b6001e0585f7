"""The hook self-check runs once per model: its pass is cached, keyed by weights and versions."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
import torch

from neuron_signatures import models
from neuron_signatures.errors import HookContractError
from neuron_signatures.models import load as load_mod
from neuron_signatures.models import verdict
from tests.tiny_models import exact_dump_args, save_model_folder


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_model_folder("gemma2", tmp_path_factory.mktemp("verdict") / "tiny")


@pytest.fixture()
def checks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """An empty verdict folder, and a spy that records every run of the real check."""
    monkeypatch.setenv(verdict.CHECKS_ENV, str(tmp_path / "checks"))
    monkeypatch.delenv(verdict.RECHECK_ENV, raising=False)
    ran: list[str] = []
    real = load_mod.verify_hook_contract

    def spy(lm: Any) -> None:
        ran.append(lm.name)
        real(lm)

    monkeypatch.setattr(load_mod, "verify_hook_contract", spy)
    return ran


def _load(folder: Path) -> Any:
    return models.load_model(str(folder), "cpu", "fp32")


def _stored(tmp: Path) -> list[dict[str, Any]]:
    return [json.loads(p.read_text()) for p in sorted((tmp / "checks").glob("*.json"))]


def test_a_pass_is_stored_then_reused_without_booting_the_bridge(
    model_dir: Path, checks: list[str], tmp_path: Path
) -> None:
    first = _load(model_dir)
    assert checks == [str(model_dir)] and first.bridge_booted  # the check boots the bridge
    (stored,) = _stored(tmp_path)
    assert stored["verdict"] == "pass"
    assert stored["key"]["versions"]["torch"] == verdict._version("torch")
    assert stored["key"]["versions"]["transformer-lens"] is not None
    assert stored["key"]["dtype"] == "fp32" and stored["key"]["device"] == "cpu"
    names = [f[0] for f in stored["key"]["model"]["files"]]
    assert "config.json" in names and "model.safetensors" in names

    second = _load(model_dir)
    assert checks == [str(model_dir)]  # not run again
    assert not second.bridge_booted
    assert second.bridge is second.bridge  # boots on first use, once
    assert second.bridge_booted


def test_a_new_library_version_or_new_weights_run_the_check_again(
    model_dir: Path, checks: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    _load(model_dir)
    real_version = verdict._version
    monkeypatch.setattr(
        verdict, "_version", lambda d: "0.0-new" if d == "transformers" else real_version(d)
    )
    _load(model_dir)
    assert len(checks) == 2
    _load(model_dir)
    assert len(checks) == 2  # the new key's pass is reused in turn
    weights = model_dir / "model.safetensors"
    st = weights.stat()
    os.utime(weights, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))  # rewritten weights
    _load(model_dir)
    assert len(checks) == 3
    _load(model_dir)
    assert len(checks) == 3


def test_a_failing_check_is_not_stored_and_removes_a_stored_pass(
    model_dir: Path, checks: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(lm: Any) -> None:
        raise HookContractError("hook_post differs from the input of the down projection")

    monkeypatch.setattr(load_mod, "verify_hook_contract", broken)
    with pytest.raises(HookContractError):
        _load(model_dir)
    assert _stored(tmp_path) == []
    with pytest.raises(HookContractError):  # still checked (and still failing) next time
        _load(model_dir)

    monkeypatch.undo()
    monkeypatch.setenv(verdict.CHECKS_ENV, str(tmp_path / "checks"))
    _load(model_dir)
    assert len(_stored(tmp_path)) == 1
    monkeypatch.setattr(load_mod, "verify_hook_contract", broken)
    monkeypatch.setenv(verdict.RECHECK_ENV, "1")  # --recheck_model
    with pytest.raises(HookContractError):
        _load(model_dir)
    assert _stored(tmp_path) == []


def test_recheck_runs_the_check_despite_a_stored_pass(
    model_dir: Path, checks: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    _load(model_dir)
    monkeypatch.setenv(verdict.RECHECK_ENV, "1")
    _load(model_dir)
    assert len(checks) == 2


def test_an_in_memory_model_is_checked_at_every_wrap(tiny_tokenizer: Any) -> None:
    from tests.tiny_models import make_models

    model, _ = make_models("gemma2")
    lm = models.wrap_hf_model(model, tiny_tokenizer, name="tiny", dtype="fp32")
    assert lm.bridge_booted  # no folder to key a verdict on: checked now


def test_the_lean_capture_is_the_same_with_or_without_the_bridge(
    model_dir: Path, checks: list[str]
) -> None:
    """Booting the bridge shares the weights and must not change them: a load that skips the
    boot (a cached pass) captures the very bytes a checked load does."""
    _load(model_dir)
    lm = _load(model_dir)
    assert not lm.bridge_booted
    ids = torch.tensor([[2, 5, 9, 11, 7], [2, 8, 3, 0, 0]])
    mask = (ids != 0).long()
    layers = list(range(lm.n_layers))
    before = {k: v.clone() for k, v in models.capture_hook_post(lm, ids, mask, layers).items()}
    _ = lm.bridge
    after = models.capture_hook_post(lm, ids, mask, layers)
    for layer in layers:
        assert torch.equal(before[layer], after[layer])


def test_the_recheck_model_flag_runs_the_check_and_leaves_the_environment_alone(
    model_dir: Path, checks: list[str], tmp_path: Path
) -> None:
    from neuron_signatures.cli import main

    prompts = tmp_path / "p.json"
    prompts.write_text(json.dumps([{"probe_id": "a", "text": "hello world"}]))
    args = exact_dump_args(prompts, tmp_path / "run", model_dir)
    assert main(["dump", *args]) == 0
    assert main(["dump", *args, "--overwrite"]) == 0
    assert len(checks) == 1  # the second dump reused the pass
    assert main(["--recheck_model", "dump", *args, "--overwrite"]) == 0
    assert len(checks) == 2
    assert verdict.RECHECK_ENV not in os.environ
