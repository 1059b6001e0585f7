"""The wheel works outside the repository: built, installed into a fresh venv, run from an empty
folder.

Marked ``wheel`` (``make test-wheel``; 1-2 minutes on 2 cores, the embedded model's converted
copy cached). The wheel is built from a copy of the files git tracks or would track (nothing it
ignores), so only what the package declares can ship. The fresh venv gets the wheel alone
(``--no-deps``) and sees this environment's installed dependencies through a ``.pth`` line, so
nothing is downloaded; the repository's own editable install is not visible there (its finder
is a ``.pth`` file of this environment, which a path added by a ``.pth`` line does not run), and
the test checks that ``neuron_signatures`` is imported from the fresh venv.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import venv
import zipfile
from pathlib import Path

import pytest

pytestmark = pytest.mark.wheel
ROOT = Path(__file__).resolve().parents[1]
PACKAGE_DATA = ("neuron_signatures/tui/app.tcss", "neuron_signatures/web/app.py")


def _run(argv: list[str], cwd: Path, env: dict[str, str], timeout: int = 600) -> str:
    res = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert res.returncode == 0, (
        f"{argv} -> {res.returncode}\n{res.stdout[-2000:]}\n{res.stderr[-3000:]}"
    )
    return res.stdout


def _tracked_copy(dest: Path) -> Path:
    files = (
        subprocess.run(
            ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
            cwd=ROOT,
            capture_output=True,
            check=True,
        )
        .stdout.decode()
        .split("\0")
    )
    for f in filter(None, files):
        if (ROOT / f).is_file():
            (dest / f).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / f, dest / f)
    return dest


def test_wheel_installs_and_runs_outside_the_repository(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["HF_HUB_OFFLINE"] = "1"
    src = _tracked_copy(tmp_path / "src")
    dist = tmp_path / "dist"
    _run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(dist),
            str(src),
        ],
        tmp_path,
        env,
    )
    (wheel,) = dist.glob("neuron_signatures-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for data in PACKAGE_DATA:
        assert data in names, f"{data} is not in the wheel"
    assert not any(n.startswith(("tests/", "docs/", "benchmarks/")) for n in names)

    fresh = tmp_path / "venv"
    venv.EnvBuilder(with_pip=False).create(fresh)
    py = fresh / "bin" / "python"
    site = Path(
        subprocess.run(
            [py, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    )
    # This environment's dependencies, after the fresh venv's own site-packages.
    (site / "zz_deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    _run(
        [
            sys.executable,
            "-m",
            "pip",
            "--python",
            str(py),
            "install",
            "--no-deps",
            "-q",
            str(wheel),
        ],
        tmp_path,
        env,
    )

    empty = tmp_path / "empty"
    empty.mkdir()
    where = _run([str(py), "-c", "import neuron_signatures as n; print(n.__file__)"], empty, env)
    assert Path(where.strip()).is_relative_to(fresh), where
    exe = str(fresh / "bin" / "neuron-signatures")
    assert "atlas" in _run([exe, "--help"], empty, env)
    _run(
        [
            exe,
            "atlas",
            "--out_dir",
            "a",
            "--layers",
            "17",
            "--max_tokens",
            "300",
            "--write_scores_k",
            "0",
            "--no_progress",
        ],
        empty,
        env,
    )
    assert (empty / "a" / "atlas.json").is_file()
    page = _run([exe, "neuron", "--atlas", "a", "L17/N345"], empty, env)
    assert "L17/N345" in page
    # The terminal view needs the packaged stylesheet (tui/app.tcss).
    _run([exe, "browse", "--atlas", "a", "--screenshot", "view.svg"], empty, env)
    assert "<svg" in (empty / "view.svg").read_text()
    assert sorted(p.name for p in empty.iterdir()) == ["a", "view.svg"]
