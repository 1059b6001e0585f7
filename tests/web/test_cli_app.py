"""``neuron-signatures app``: the Streamlit command line it builds and the errors it reports."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from neuron_signatures.cli import main
from neuron_signatures.commands import app as app_cmd
from neuron_signatures.web import APP_SCRIPT


def test_starts_streamlit_on_the_app_script(
    web_run: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    seen: list[list[str]] = []

    class FakePopen:
        def __init__(self, cmd: list[str]) -> None:
            seen.append(cmd)

        def wait(self, timeout: float | None = None) -> int:
            return 0

        def poll(self) -> int:
            return 0

    monkeypatch.setattr(app_cmd.subprocess, "Popen", FakePopen)
    with socket.socket() as s:  # a port that is free right now
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    rc = main(["app", "--run_dir", str(web_run), "--port", str(port), "--runs_root", "r"])
    assert rc == 0
    cmd = seen[0]
    assert cmd[:5] == [sys.executable, "-m", "streamlit", "run", str(APP_SCRIPT)]
    assert cmd[cmd.index("--server.port") + 1] == str(port)
    assert cmd[cmd.index("--browser.gatherUsageStats") + 1] == "false"
    script_args = cmd[cmd.index("--") + 1 :]
    assert script_args == ["--runs_root", "r", "--run_dir", str(web_run.resolve())]
    assert f":{port}" in capsys.readouterr().out


def test_bad_run_dir_is_one_line_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(app_cmd.subprocess, "Popen", lambda cmd: pytest.fail("started"))
    assert main(["app", "--run_dir", str(tmp_path / "nope")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and "does not exist" in err and err.count("\n") == 1


def test_port_checks(web_run: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(app_cmd.subprocess, "Popen", lambda cmd: pytest.fail("started"))
    assert main(["app", "--run_dir", str(web_run), "--port", "70000"]) == 2
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        busy = s.getsockname()[1]
        assert main(["app", "--run_dir", str(web_run), "--port", str(busy)]) == 2


def test_serve_stops_streamlit_when_interrupted(tmp_path: Path) -> None:
    """SIGTERM to the command must not leave the server running."""
    marker = tmp_path / "child.pid"
    child = f"import os, time; open({str(marker)!r}, 'w').write(str(os.getpid())); time.sleep(60)"
    parent = (
        "import sys; from neuron_signatures.commands.app import serve; "
        f"sys.exit(serve([sys.executable, '-c', {child!r}]))"
    )
    proc = subprocess.Popen([sys.executable, "-c", parent])
    try:
        for _ in range(200):
            if marker.exists() and marker.read_text():
                break
            time.sleep(0.05)
        pid = int(marker.read_text())
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 128 + signal.SIGTERM
        for _ in range(100):
            if not _alive(pid):
                break
            time.sleep(0.05)
        assert not _alive(pid)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    return not (stat.exists() and stat.read_text().split()[2] == "Z")  # zombie: exited


def test_web_app_imports_without_torch() -> None:
    code = (
        "import sys; import neuron_signatures.web.app, neuron_signatures.web.panels, "
        "neuron_signatures.commands.app; "
        "heavy = {'torch', 'transformers', 'transformer_lens'} & set(sys.modules); "
        "assert not heavy, heavy"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120, capture_output=True)
