"""Resume, verify and the early checks of a dump, against the failures they must survive."""

from __future__ import annotations

import fcntl
import json
import os
import shutil
from pathlib import Path
from typing import Any

import pytest

from neuron_signatures import models
from neuron_signatures.cli import main
from neuron_signatures.errors import ModelLoadError
from neuron_signatures.store import open_run, verify_run
from neuron_signatures.store.progress import read_progress
from tests.cli_run import run_cli
from tests.tiny_models import exact_dump_args


def one_line_error(rc: int, err: str) -> bool:
    return rc == 2 and err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err


@pytest.fixture(scope="module")
def run4(
    tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path, prompts_file: Path
) -> Path:
    """A complete fp32 run of 4 prompts in 4 shards (copy it before changing it)."""
    out = tmp_path_factory.mktemp("hardening") / "run4"
    assert main(dump_argv(prompts_file, out, tiny_model_dir)) == 0
    return out


def dump_argv(prompts: Path, out: Path, model: Path, *extra: str) -> list[str]:
    return ["dump", *exact_dump_args(prompts, out, model), "--batch_size", "1", *extra]


@pytest.fixture
def argv(tiny_model_dir: Path, prompts_file: Path) -> Any:
    return lambda out, *extra: dump_argv(prompts_file, out, tiny_model_dir, *extra)


def copy_run(src: Path, dest: Path) -> Path:
    shutil.copytree(src, dest)
    return dest


def interrupt(run_dir: Path, keep: int) -> None:
    """Make a complete run look killed after ``keep`` shards (their entries in the log only)."""
    manifest = json.loads((run_dir / "manifest.json").read_text())
    lines = []
    for i, s in enumerate(manifest["shards"]):
        if i < keep:
            lines.append(json.dumps({"shard": i, "bytes": s["bytes"], "sha256": s["sha256"]}))
        else:
            (run_dir / "activations" / s["file"]).unlink()
        s["bytes"] = s["sha256"] = None
    manifest.update(complete=False, status="in_progress")
    (run_dir / "manifest.json").write_text(json.dumps(manifest))
    (run_dir / "activations" / "progress.jsonl").write_text("".join(x + "\n" for x in lines))


def snapshot(run_dir: Path) -> dict[str, tuple[int, bytes]]:
    """mtime and bytes of every file of a run (the lock file aside)."""
    return {
        str(p.relative_to(run_dir)): (p.stat().st_mtime_ns, p.read_bytes())
        for p in sorted(run_dir.rglob("*"))
        if p.is_file() and p.name != ".lock"
    }


def forbid_model(monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(*_a: Any, **_k: Any) -> None:
        raise AssertionError("the model was loaded or run")

    monkeypatch.setattr(models, "load_model", boom)
    monkeypatch.setattr(models, "capture_hook_post", boom)


# -- 1. --resume on a finished run ---------------------------------------------------------------
def test_resume_of_finished_run_is_a_noop(
    run4: Path, tmp_path: Path, argv: Any, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    run = copy_run(run4, tmp_path / "r")
    before = snapshot(run)
    forbid_model(monkeypatch)
    rc, out, err = run_cli(capsys, *argv(run, "--resume"))
    assert rc == 0, err
    assert "already complete" in out
    assert snapshot(run) == before


def test_finished_run_copied_to_other_device_is_still_complete(
    run4: Path, tmp_path: Path, argv: Any, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    run = copy_run(run4, tmp_path / "r")
    manifest = json.loads((run / "manifest.json").read_text())
    manifest["run_device"] = "cuda"
    (run / "manifest.json").write_text(json.dumps(manifest))
    forbid_model(monkeypatch)
    rc, out, _ = run_cli(capsys, *argv(run, "--resume"))
    assert rc == 0 and "already complete" in out


def test_resume_of_finished_run_recomputes_only_bad_shard(
    run4: Path, tmp_path: Path, argv: Any, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    run = copy_run(run4, tmp_path / "r")
    bad = run / "activations" / "shard_00002.safetensors"
    good = bad.read_bytes()
    data = bytearray(good)
    data[-5] ^= 0xFF
    bad.write_bytes(bytes(data))
    before = snapshot(run)
    forwards: list[int] = []
    real = models.capture_hook_post
    monkeypatch.setattr(
        models, "capture_hook_post", lambda *a, **k: forwards.append(1) or real(*a, **k)
    )
    rc, out, err = run_cli(capsys, *argv(run, "--resume"))
    assert rc == 0, err
    assert "shard_00002.safetensors" in out and "recomputing only those" in out
    assert len(forwards) == 1
    assert bad.read_bytes() == good
    after = snapshot(run)
    for name in ("shard_00000", "shard_00001", "shard_00003"):
        key = f"activations/{name}.safetensors"
        assert after[key] == before[key]
    assert verify_run(run).ok


# -- 3. temporary files left by a kill -----------------------------------------------------------
def test_leftover_temp_files_are_reported_then_removed(
    run4: Path, tmp_path: Path, argv: Any, capsys: Any
) -> None:
    run = copy_run(run4, tmp_path / "r")
    interrupt(run, keep=2)
    tmp = run / "activations" / ".shard_00002.safetensors.k1ll3d.tmp"
    tmp.write_bytes(b"\0" * 1000)
    rc, out, err = run_cli(capsys, "verify", str(run))
    assert rc == 2
    assert "activations/.shard_00002.safetensors.k1ll3d.tmp (1000 B)" in out
    rc, out, err = run_cli(capsys, *argv(run, "--resume"))
    assert rc == 0, err
    assert "removed 1 temporary files" in out and not tmp.exists()
    assert verify_run(run).ok and not verify_run(run).notes


# -- 4. a torn progress line ---------------------------------------------------------------------
def test_torn_progress_line_does_not_swallow_the_next_entry(
    run4: Path, tmp_path: Path, argv: Any, capsys: Any
) -> None:
    run = copy_run(run4, tmp_path / "r")
    interrupt(run, keep=1)
    with open(run / "activations" / "progress.jsonl", "a") as f:
        f.write('{"shard": 1, "by')  # a kill in the middle of a line
    seen: list[str] = []

    def look(_shard: int) -> None:  # read the log while the resumed dump is still writing it
        seen.append((run / "activations" / "progress.jsonl").read_text())

    from neuron_signatures import capture

    real = capture._capture_all
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(capture, "_capture_all", lambda *a: real(*a[:-1], look))
        rc, _, err = run_cli(capsys, *argv(run, "--resume"))
    assert rc == 0, err
    assert len(seen) == 3
    lines = seen[-1].splitlines()
    assert [json.loads(line)["shard"] for line in lines] == [0, 1, 2, 3]
    assert open_run(run).n_prompts == 4 and verify_run(run).ok
    for name in ("shard_00000", "shard_00001", "shard_00002", "shard_00003"):
        f = f"activations/{name}.safetensors"
        assert (run / f).read_bytes() == (run4 / f).read_bytes()


def test_read_progress_ignores_torn_line(tmp_path: Path) -> None:
    (tmp_path / "activations").mkdir()
    (tmp_path / "activations" / "progress.jsonl").write_text(
        '{"shard": 0, "bytes": 5, "sha256": "a"}\n{"shard": 1, "by'
    )
    assert read_progress(tmp_path) == {0: (5, "a")}


# -- 5. settings a resume must match -------------------------------------------------------------
@pytest.mark.parametrize(
    "change,extra,message",
    [
        ({"run_device": "cuda"}, (), "--device differs (run: cuda, now: cpu)"),
        ({"versions": {"torch": "1.0.0"}}, (), "the torch version differs (run: 1.0.0, now: "),
        ({"versions": {"transformers": "0.1"}}, (), "the transformers version differs (run: 0.1"),
        ({}, ("--batch_size", "2"), "--batch_size differs (run: 1, now: 2)"),
        ({}, ("--save_dtype", "bf16"), "--save_dtype differs (run: fp32, now: bf16)"),
        ({}, ("--layers", "0,2"), "--layers differs (run: 0,1,2, now: 0,2)"),
        ({"model_dtype": "bf16"}, (), "model dtype (--model_dtype) differs (run: bf16, now: fp32)"),
    ],
)
def test_resume_names_the_setting_that_differs(
    run4: Path,
    tmp_path: Path,
    argv: Any,
    monkeypatch: pytest.MonkeyPatch,
    capsys: Any,
    change: dict[str, Any],
    extra: tuple[str, ...],
    message: str,
) -> None:
    run = copy_run(run4, tmp_path / "r")
    interrupt(run, keep=2)
    manifest = json.loads((run / "manifest.json").read_text())
    for key, value in change.items():
        manifest[key] = {**manifest[key], **value} if isinstance(value, dict) else value
    (run / "manifest.json").write_text(json.dumps(manifest))
    before = snapshot(run)
    forbid_model(monkeypatch)  # refused before the model loads
    args = argv(run, "--resume")
    if extra:
        i = args.index(extra[0]) if extra[0] in args else None
        if i is not None:
            del args[i : i + 2]
        args += list(extra)
    rc, _, err = run_cli(capsys, *args)
    assert one_line_error(rc, err), err
    assert message in err and "--overwrite" in err
    assert snapshot(run) == before


# -- 19. checks made before the model loads ------------------------------------------------------
def test_lock_is_taken_before_the_model_loads(
    tmp_path: Path, argv: Any, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    out = tmp_path / "r"
    held: list[bool] = []

    def load(*_a: Any, **_k: Any) -> None:
        fd = os.open(out / ".lock", os.O_RDWR)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            held.append(False)
        except BlockingIOError:
            held.append(True)
        finally:
            os.close(fd)
        raise ModelLoadError("stop here")

    monkeypatch.setattr(models, "load_model", load)
    rc, _, err = run_cli(capsys, *argv(out))
    assert rc == 2 and "stop here" in err
    assert held == [True]
    assert not out.exists()  # nothing was written, so the folder it made is gone


@pytest.mark.parametrize(
    "layers,message",
    [
        ("0,9", "has 3 layers, use 0..2"),
        ("3-1", "--layers range 3-1 is reversed: write the low layer first (1-3)"),
        (",", "--layers is empty"),
    ],
)
def test_layers_checked_before_the_model_loads(
    tmp_path: Path,
    argv: Any,
    monkeypatch: pytest.MonkeyPatch,
    capsys: Any,
    layers: str,
    message: str,
) -> None:
    forbid_model(monkeypatch)
    rc, _, err = run_cli(capsys, *argv(tmp_path / "r", "--layers", layers))
    assert one_line_error(rc, err) and message in err, err
    assert not (tmp_path / "r").exists()


# -- 21. verify on an interrupted run ------------------------------------------------------------
def test_verify_interrupted_run(run4: Path, tmp_path: Path, capsys: Any) -> None:
    run = copy_run(run4, tmp_path / "r")
    interrupt(run, keep=3)
    rc, out, err = run_cli(capsys, "verify", str(run))
    assert one_line_error(rc, err), err
    assert "incomplete run: 3 of 4 shards written; finish it with" in err and "--resume" in err
    assert "manifest says" not in out + err and out == ""
    shard = run / "activations" / "shard_00001.safetensors"
    data = bytearray(shard.read_bytes())
    data[-1] ^= 0xFF
    shard.write_bytes(bytes(data))
    rc, out, err = run_cli(capsys, "verify", str(run))
    assert rc == 2 and "shard_00001.safetensors: sha256 mismatch" in out
    assert "incomplete run: 2 of 4 shards written" in out + err


# -- 22. messages that named the wrong fix -------------------------------------------------------
def test_verify_missing_folder_names_no_flag(tmp_path: Path, capsys: Any) -> None:
    rc, _, err = run_cli(capsys, "verify", str(tmp_path / "nope"))
    assert one_line_error(rc, err) and "does not exist" in err and "--run_dir" not in err


@pytest.mark.parametrize("flags", [(), ("--overwrite",), ("--resume",)])
def test_folder_that_is_not_a_run(
    tmp_path: Path,
    argv: Any,
    monkeypatch: pytest.MonkeyPatch,
    capsys: Any,
    flags: tuple[str, ...],
) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "notes.md").write_text("keep me")
    forbid_model(monkeypatch)
    rc, _, err = run_cli(capsys, *argv(docs, *flags))
    assert one_line_error(rc, err), err
    assert "not a run folder" in err and "pick an empty or new --out_dir" in err
    assert "--overwrite" not in err.replace("--out_dir", "")
    assert sorted(p.name for p in docs.iterdir()) == ["notes.md"]


def test_unknown_model_shape_still_checks_what_it_can_before_the_load(
    run4: Path, tmp_path: Path, argv: Any, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    """Without a config on disk or a known shape, the settings known without the model (device,
    dtypes, prompts, versions...) are still compared before the load; --layers waits for it."""
    from neuron_signatures import dump_plan

    monkeypatch.setattr(dump_plan, "known_shape", lambda _name: None)
    run = copy_run(run4, tmp_path / "r")
    interrupt(run, keep=2)
    manifest = json.loads((run / "manifest.json").read_text())
    manifest["run_device"] = "cuda"
    (run / "manifest.json").write_text(json.dumps(manifest))
    with monkeypatch.context() as mp:
        forbid_model(mp)
        rc, _, err = run_cli(capsys, *argv(run, "--resume"))
    assert one_line_error(rc, err) and "--device differs (run: cuda, now: cpu)" in err
    rc, _, err = run_cli(capsys, *argv(tmp_path / "new", "--layers", "0,9"))
    assert one_line_error(rc, err) and "--layers 9 out of range" in err, err


def test_atomic_writes_get_the_mode_open_would_give(tmp_path: Path) -> None:
    """mkstemp makes 0600 files: atomic writes must not hide run, atlas or export files from
    the group and others where the umask allows them (shared storage, Ray workers)."""
    from neuron_signatures.store.atomic import atomic_open, atomic_write_bytes

    atomic_write_bytes(tmp_path / "a.bin", b"x")
    with atomic_open(tmp_path / "b.txt", "w") as f:
        f.write("y")
    (tmp_path / "c.txt").write_text("z")  # what open() gives under this process's umask
    modes = {p.name: p.stat().st_mode & 0o777 for p in tmp_path.iterdir()}
    assert modes["a.bin"] == modes["b.txt"] == modes["c.txt"]
    mask = os.umask(0)
    os.umask(mask)
    assert modes["a.bin"] == 0o666 & ~mask


def test_unwritable_out_dir_is_one_line_before_anything_loads(
    tmp_path: Path, argv: Any, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    """A run folder that cannot be made or written fails in one line, exit 2, before the
    tokenizer or the model loads (root ignores chmod: a path under a regular file, /proc)."""
    forbid_model(monkeypatch)

    def boom(*_a: Any, **_k: Any) -> None:
        raise AssertionError("the tokenizer was loaded")

    monkeypatch.setattr(models, "load_tokenizer", boom)
    (tmp_path / "file.txt").write_text("x")
    bad = [tmp_path / "file.txt" / "run", tmp_path / "file.txt" / "a" / "run"]
    if Path("/proc/self").is_dir():
        bad.append(Path("/proc/no-such-run-dir/run"))
    for out in bad:
        for flags in ((), ("--resume",), ("--overwrite",)):
            rc, _, err = run_cli(capsys, *argv(out, *flags))
            assert one_line_error(rc, err), err
            assert f"cannot write --out_dir {out}" in err, err


def test_write_probe_removes_what_it_made(tmp_path: Path) -> None:
    from neuron_signatures.errors import OutputNotWritableError
    from neuron_signatures.store.writable import check_writable

    check_writable(tmp_path / "a" / "b" / "c")
    assert list(tmp_path.iterdir()) == []
    (tmp_path / "kept").mkdir()
    check_writable(tmp_path / "kept")
    assert (tmp_path / "kept").is_dir() and list((tmp_path / "kept").iterdir()) == []
    (tmp_path / "f").write_text("x")
    with pytest.raises(OutputNotWritableError, match=r"cannot write --where .*/f/x \(.*f is a"):
        check_writable(tmp_path / "f" / "x", flag="--where")
