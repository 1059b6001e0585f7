"""The CLI in-process: dump, estimate, models, verify, the prototype shim and bad input."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from neuron_signatures import poc1_dump_activations
from neuron_signatures.cli import build_parser, command_modules
from neuron_signatures.store import open_run
from tests.cli_run import run_cli
from tests.tiny_models import exact_dump_args


def test_every_command_has_help() -> None:
    parser = build_parser()
    names = [m.NAME for m in command_modules()]
    assert {"dump", "estimate", "verify", "models"} <= set(names)
    for mod in command_modules():
        assert mod.HELP.strip()
        sub = parser._subparsers._group_actions[0].choices[mod.NAME]  # type: ignore[union-attr]
        for action in sub._actions:
            if action.dest not in ("help",) and action.option_strings:
                assert action.help, f"{mod.NAME} {action.option_strings} has no help"


def test_dump_cli_and_shim(
    tiny_run: Path,
    tiny_model_dir: Path,
    prompts_file: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    run = open_run(tiny_run)
    m = run.manifest
    for key in (
        "format_version",
        "created_at_utc",
        "model_name",
        "hook_name",
        "n_layers",
        "d_mlp",
        "run_device",
        "model_dtype",
        "save_dtype",
        "prepend_bos",
        "activations_file",
        "versions",
        "model",
        "layers",
        "shards",
        "complete",
    ):
        assert key in m, key
    assert m["complete"] and m["model_dtype"] == "fp32" and m["run_device"] == "cpu"
    for p in m["prompts"]:
        for key in (
            "probe_id",
            "text",
            "token_ids",
            "tokens_ascii",
            "tokens",
            "seq_len",
            "activation_tensor_key",
            "activation_tensor_shape",
            "activation_tensor_dtype",
        ):
            assert key in p
    out = tmp_path / "shim"
    rc = poc1_dump_activations.main(exact_dump_args(prompts_file, out, tiny_model_dir))
    assert rc == 0
    a, b = open_run(out), run
    for p in a.prompts:
        assert (a.prompt_acts(p.index) == b.prompt_acts(p.index)).all()
    rc, outp, _ = run_cli(capsys, "verify", str(out))
    assert rc == 0 and outp.splitlines()[-1].startswith("ok:")


def test_single_prompt(
    tiny_model_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rc, _, err = run_cli(
        capsys,
        "dump",
        "--single_prompt",
        "The capital of Texas is",
        "--out_dir",
        str(tmp_path / "one"),
        "--model_name",
        str(tiny_model_dir),
        "--no_progress",
        "--check_finite",
    )
    assert rc == 0, err
    run = open_run(tmp_path / "one")
    assert [p.probe_id for p in run.prompts] == ["single_prompt"]
    assert run.manifest["save_dtype"] == "bf16"


def write(tmp_path: Path, name: str, content: Any) -> str:
    p = tmp_path / name
    p.write_text(content if isinstance(content, str) else json.dumps(content))
    return str(p)


@pytest.mark.parametrize(
    "content,match",
    [
        ('[{"id": 1', "not valid JSON"),
        ({"id": "a"}, "must hold a JSON list"),
        ([{"text": "x"}], 'has no "id"'),
        ([{"id": "a", "text": "x"}, {"id": "a", "text": "y"}], "duplicate prompt id 'a'"),
        ([{"id": "a", "text": 3}], '"text" must be a string'),
        ([{"id": "a", "text": "  "}], "empty text"),
        ([], "holds no prompts"),
        ([{"id": "long", "text": "hello " * 40}], "longer than --max_seq_len"),
    ],
)
def test_bad_prompts(
    tmp_path: Path,
    tiny_model_dir: Path,
    capsys: pytest.CaptureFixture[str],
    content: Any,
    match: str,
) -> None:
    f = write(tmp_path, "p.json", content)
    out = tmp_path / "run"
    rc, _, err = run_cli(
        capsys,
        "dump",
        "--prompts_json",
        f,
        "--out_dir",
        str(out),
        "--model_name",
        str(tiny_model_dir),
        "--max_seq_len",
        "16",
        "--no_progress",
    )
    assert rc == 2
    assert match in err and err.count("\n") == 1 and "Traceback" not in err
    assert not (out / "manifest.json").exists()


def test_truncate_flag(
    tmp_path: Path, tiny_model_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    f = write(tmp_path, "p.txt", "hello " * 40 + "\n\nworld\n")
    rc, _, err = run_cli(
        capsys,
        "dump",
        "--prompts",
        f,
        "--out_dir",
        str(tmp_path / "t"),
        "--model_name",
        str(tiny_model_dir),
        "--max_seq_len",
        "16",
        "--truncate",
        "--no_progress",
    )
    assert rc == 0, err
    run = open_run(tmp_path / "t")
    assert [p.probe_id for p in run.prompts] == ["line_1", "line_3"]
    assert run.prompts[0].seq_len == 16


@pytest.mark.parametrize(
    "args,match",
    [
        (["--model_name", "nosuchmodel"], "unknown model"),
        (["--model_name", "./missing/folder"], "does not exist"),
        (["--model_name", "missing.gguf"], "does not exist"),
        (["--layers", "0,9"], "out of range"),
        (["--layers", "x"], "is not a list"),
        (["--batch_size", "0"], "positive integer"),
        (["--resume", "--overwrite"], "not allowed with argument"),
        (["--save_dtype", "int8"], "invalid choice"),
    ],
)
def test_bad_flags(
    tmp_path: Path,
    tiny_model_dir: Path,
    prompts_file: Path,
    capsys: pytest.CaptureFixture[str],
    args: list[str],
    match: str,
) -> None:
    base = [
        "dump",
        "--prompts_json",
        str(prompts_file),
        "--out_dir",
        str(tmp_path / "r"),
        "--no_progress",
    ]
    if "--model_name" not in args:
        base += ["--model_name", str(tiny_model_dir)]
    rc, _, err = run_cli(capsys, *base, *args)
    assert rc == 2 and match in err and err.count("\n") == 1 and "Traceback" not in err


def test_existing_run_is_protected(
    tiny_run: Path, tiny_model_dir: Path, prompts_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before = (tiny_run / "manifest.json").read_bytes()
    rc, _, err = run_cli(
        capsys,
        "dump",
        "--prompts_json",
        str(prompts_file),
        "--out_dir",
        str(tiny_run),
        "--model_name",
        str(tiny_model_dir),
        "--no_progress",
    )
    assert rc == 2 and "--resume" in err
    rc, _, _ = run_cli(
        capsys,
        "dump",
        "--prompts_json",
        str(prompts_file),
        "--out_dir",
        str(tiny_run),
        "--model_name",
        str(tiny_model_dir),
        "--no_progress",
        "--model_dtype",
        "fp32",
        "--save_dtype",
        "fp32",
        "--batch_size",
        "2",
        "--resume",
    )
    assert rc == 0
    assert (
        json.loads((tiny_run / "manifest.json").read_bytes())["fingerprint"]
        == json.loads(before)["fingerprint"]
    )


def test_gated_hub_model_without_network(
    tmp_path: Path, prompts_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rc, _, err = run_cli(
        capsys,
        "dump",
        "--prompts_json",
        str(prompts_file),
        "--out_dir",
        str(tmp_path / "g"),
        "--model_name",
        "google/gemma-2-2b",
        "--no_progress",
    )
    assert rc == 2 and "huggingface-cli login" in err and err.count("\n") == 1


def test_estimate(capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, _ = run_cli(
        capsys,
        "estimate",
        "--seq_len",
        "128",
        "--n_prompts",
        "1000",
        "--model_name",
        "google/gemma-2-2b",
    )
    assert rc == 0
    assert "26 layers x 9216" in out
    bf16 = next(line for line in out.splitlines() if line.startswith("bf16"))
    assert "468.00 KiB" in bf16 and "58.50 MiB" in bf16 and "57.13 GiB" in bf16  # 26*9216*2 B


def test_models_lists_embedded(capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, _ = run_cli(capsys, "models")
    assert rc == 0 and "gemma3-270m" in out and "google/gemma-2-2b" in out


def test_disk_check(
    tiny_model_dir: Path,
    prompts_file: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    import shutil
    from collections import namedtuple

    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda _p: usage(100, 100, 10))
    rc, _, err = run_cli(
        capsys,
        "dump",
        "--prompts_json",
        str(prompts_file),
        "--out_dir",
        str(tmp_path / "d"),
        "--model_name",
        str(tiny_model_dir),
        "--no_progress",
    )
    assert rc == 2 and "GiB free" in err
    assert not (tmp_path / "d").exists()
