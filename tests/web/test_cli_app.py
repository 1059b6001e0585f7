"""``neuron-signatures app``: the Streamlit command line it builds and the errors it reports."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest

from neuron_signatures.cli import main
from neuron_signatures.commands import app as app_cmd
from neuron_signatures.web import APP_SCRIPT


def test_starts_streamlit_on_the_app_script(
    web_run: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    seen: list[list[str]] = []

    class FakePopen:
        def __init__(self, cmd: list[str], **kwargs: object) -> None:
            assert kwargs.get("stdin") == subprocess.DEVNULL  # nothing can wait on a prompt
            seen.append(cmd)

        def wait(self, timeout: float | None = None) -> int:
            return 0

        def poll(self) -> int:
            return 0

    monkeypatch.setattr(app_cmd.subprocess, "Popen", FakePopen)
    with socket.socket() as s:  # a port that is free right now
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    root = tmp_path / "r"
    root.mkdir()
    rc = main(["app", "--run_dir", str(web_run), "--port", str(port), "--runs_root", str(root)])
    assert rc == 0
    cmd = seen[0]
    assert cmd[:5] == [sys.executable, "-m", "streamlit", "run", str(APP_SCRIPT)]
    assert cmd[cmd.index("--server.port") + 1] == str(port)
    assert cmd[cmd.index("--browser.gatherUsageStats") + 1] == "false"
    assert cmd[cmd.index("--server.showEmailPrompt") + 1] == "false"
    script_args = cmd[cmd.index("--") + 1 :]
    assert script_args == ["--runs_root", str(root.resolve()), "--run_dir", str(web_run.resolve())]
    assert f":{port}" in capsys.readouterr().out


def test_bad_run_dir_is_one_line_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(app_cmd.subprocess, "Popen", lambda cmd: pytest.fail("started"))
    assert main(["app", "--run_dir", str(tmp_path / "nope")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and "does not exist" in err and err.count("\n") == 1


def test_atlas_flag_reaches_the_script(
    web_atlas: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    seen: list[list[str]] = []
    monkeypatch.setattr(app_cmd, "serve", lambda cmd: seen.append(cmd) or 0)
    from tests.web.browser import free_port

    assert main(["app", "--atlas", str(web_atlas), "--port", str(free_port())]) == 0
    script_args = seen[0][seen[0].index("--") + 1 :]
    assert script_args[-2:] == ["--atlas", str(web_atlas.resolve())]
    assert "--run_dir" not in script_args


@pytest.mark.parametrize(
    ("kind", "message"),
    [("missing", "is not an atlas"), ("run", "is not an atlas"), ("incomplete", "is not finished")],
)
def test_bad_atlas_is_one_line_error(
    kind: str,
    message: str,
    web_atlas: Path,
    web_run: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setattr(app_cmd, "serve", lambda cmd: pytest.fail("started"))
    folder = {"missing": tmp_path / "nope", "run": web_run}.get(kind, tmp_path / "A")
    if kind == "incomplete":
        import json
        import shutil

        shutil.copytree(web_atlas, folder)
        m = json.loads((folder / "atlas.json").read_text())
        (folder / "atlas.json").write_text(json.dumps({**m, "complete": False}))
    assert main(["app", "--atlas", str(folder)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and message in err and err.count("\n") == 1


def test_shared_address_keeps_atlas_under_runs_root(
    web_atlas: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    monkeypatch.setattr(app_cmd, "serve", lambda cmd: pytest.fail("started"))
    flags = ["app", "--atlas", str(web_atlas), "--address", "0.0.0.0", "--runs_root"]
    assert main([*flags, str(tmp_path)]) == 2
    assert "--atlas" in (err := capsys.readouterr().err) and "outside the runs root" in err


def test_port_checks(web_run: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(app_cmd.subprocess, "Popen", lambda cmd: pytest.fail("started"))
    assert main(["app", "--run_dir", str(web_run), "--port", "70000"]) == 2
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        busy = s.getsockname()[1]
        assert main(["app", "--run_dir", str(web_run), "--port", str(busy)]) == 2


@pytest.mark.parametrize(
    ("env", "tty", "platform", "expected"),
    [
        ({"DISPLAY": ":0"}, True, "linux", True),
        ({"WAYLAND_DISPLAY": "wayland-0"}, True, "linux", True),
        ({}, True, "linux", False),  # no X or Wayland session
        ({"DISPLAY": ":0", "SSH_CONNECTION": "10.0.0.2 5000 10.0.0.1 22"}, True, "linux", False),
        ({"DISPLAY": ":0"}, False, "linux", False),  # no terminal: started by a script
        ({}, True, "darwin", True),
        ({"SSH_TTY": "/dev/pts/1"}, True, "darwin", False),
    ],
)
def test_has_display(env: dict[str, str], tty: bool, platform: str, expected: bool) -> None:
    assert app_cmd.has_display(env, tty, platform) is expected


def test_tunnel_hint_names_this_machine() -> None:
    env = {"SSH_CONNECTION": "10.0.0.2 51000 10.0.0.1 2222"}
    user = __import__("getpass").getuser()
    assert app_cmd.tunnel_hint(8600, env) == f"ssh -L 8600:localhost:8600 -p 2222 {user}@10.0.0.1"
    assert app_cmd.tunnel_hint(8501, {}).startswith("ssh -L 8501:localhost:8501 ")


def test_shared_address_keeps_run_dir_under_runs_root(
    web_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    monkeypatch.setattr(app_cmd.subprocess, "Popen", lambda *a, **k: pytest.fail("started"))
    flags = ["app", "--run_dir", str(web_run), "--address", "0.0.0.0", "--runs_root"]
    assert main([*flags, str(tmp_path)]) == 2
    assert "outside the runs root" in capsys.readouterr().err


def test_app_never_prompts_and_prints_the_url_without_a_display(
    web_run: Path, tmp_path: Path
) -> None:
    """A fresh machine (empty HOME, no Streamlit credentials), no display, no stdin: Streamlit
    must come up without its "Email:" prompt and the command must print where to reach it."""
    from tests.web.browser import free_port

    port = free_port()
    home = tmp_path / "home"
    home.mkdir()
    drop = ("DISPLAY", "WAYLAND_DISPLAY", "SSH_CONNECTION", "SSH_CLIENT", "SSH_TTY")
    env = {k: v for k, v in os.environ.items() if k not in drop and not k.startswith("STREAMLIT")}
    env.update(HOME=str(home), PYTHONUNBUFFERED="1")
    cmd = [sys.executable, "-m", "neuron_signatures", "app", "--run_dir", str(web_run),
           "--port", str(port), "--runs_root", str(web_run.parent)]  # fmt: skip
    proc = subprocess.Popen(
        cmd, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True, start_new_session=True,
    )  # fmt: skip
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(proc.stdout or []), daemon=True)
    reader.start()
    try:
        deadline = time.monotonic() + 90
        while not _healthy(port) and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.5)
        assert _healthy(port), "".join(lines)
        out = "".join(lines)
        assert f"http://localhost:{port}" in out
        assert f"ssh -L {port}:localhost:{port}" in out  # no display: how to reach it
        assert "Email" not in out and "Welcome to Streamlit" not in out, out
    finally:
        proc.send_signal(signal.SIGTERM)  # the command stops its Streamlit child
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
        reader.join(timeout=10)
    assert "Email" not in "".join(lines)
    assert not (home / ".streamlit" / "credentials.toml").exists()


def _healthy(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=2) as r:
            return r.status == 200
    except OSError:
        return False


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
        "neuron_signatures.web.atlasview, neuron_signatures.web.atlassearch, "
        "neuron_signatures.commands.app; "
        "heavy = {'torch', 'transformers', 'transformer_lens'} & set(sys.modules); "
        "assert not heavy, heavy"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120, capture_output=True)
