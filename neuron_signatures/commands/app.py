"""``app``: start the Streamlit web app on a run folder, an atlas or a folder of NeuronRecords
(``python -m streamlit run web/app.py``).

Streamlit never prompts: its first-run "Email:" question is switched off, usage statistics are
off, and without a display (ssh, a remote GPU box, no terminal) it runs headless and this command
prints the URL and the ``ssh -L`` tunnel to reach it from your own machine.
"""

from __future__ import annotations

import argparse
import getpass
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from types import FrameType

from ..errors import BadArgumentError

NAME = "app"
HELP = (
    "open the web app (Streamlit): neurons across the prompts of a run, or an atlas's neuron pages"
)
ORDER = 45


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--run_dir", default=None, help="run folder to open (default: pick one in the sidebar)"
    )
    p.add_argument(
        "--atlas",
        default=None,
        help="atlas folder (made by `neuron-signatures atlas`): open its neuron pages and search; "
        "with --run_dir too, each page adds the run's panels for the neuron",
    )
    p.add_argument(
        "--neuron_records",
        default=None,
        help="folder of OpenAI NeuronRecord files ({layer}/{neuron}.json, e.g. from `export "
        "--format neuron_record` or OpenAI's public datasets): browse their records",
    )
    p.add_argument(
        "--runs_root",
        default=".",
        help="folder the sidebar lists runs from (default: the current folder); on a non-local "
        "--address, the only folders the app opens",
    )
    p.add_argument("--port", type=int, default=8501, help="local port (default: 8501)")
    p.add_argument(
        "--address",
        default="localhost",
        help="address to listen on (default: localhost; 0.0.0.0 to share: then only folders "
        "under --runs_root open)",
    )
    p.add_argument("--no_browser", action="store_true", help="do not open a browser tab")


def has_display(
    env: Mapping[str, str] | None = None, tty: bool | None = None, platform: str | None = None
) -> bool:
    """Whether a browser tab can open here: a graphical session, not over ssh, with a terminal."""
    env = os.environ if env is None else env
    tty = sys.stdin is not None and sys.stdin.isatty() if tty is None else tty
    platform = sys.platform if platform is None else platform
    if any(env.get(k) for k in ("SSH_CONNECTION", "SSH_CLIENT", "SSH_TTY")) or not tty:
        return False
    if platform.startswith(("linux", "freebsd", "openbsd")):
        return bool(env.get("DISPLAY") or env.get("WAYLAND_DISPLAY"))
    return True


def streamlit_command(args: argparse.Namespace, headless: bool | None = None) -> list[str]:
    """The ``python -m streamlit run`` command line for these arguments (never prompts)."""
    from ..web import APP_SCRIPT

    if headless is None:
        headless = args.no_browser or not has_display()
    cmd = [
        sys.executable, "-m", "streamlit", "run", str(APP_SCRIPT),
        "--server.port", str(args.port),
        "--server.address", args.address,
        "--server.headless", "true" if headless else "false",
        "--server.showEmailPrompt", "false",
        "--browser.gatherUsageStats", "false",
        "--", "--runs_root", str(Path(args.runs_root).resolve()),
    ]  # fmt: skip
    if args.run_dir:
        cmd += ["--run_dir", str(Path(args.run_dir).resolve())]
    if getattr(args, "atlas", None):
        cmd += ["--atlas", str(Path(args.atlas).resolve())]
    if getattr(args, "neuron_records", None):
        cmd += ["--neuron_records", str(Path(args.neuron_records).resolve())]
    return cmd


def tunnel_hint(port: int, env: Mapping[str, str] | None = None) -> str:
    """``ssh -L`` command that brings this machine's ``port`` to the same port on yours."""
    env = os.environ if env is None else env
    host = socket.gethostname()
    ssh = (env.get("SSH_CONNECTION") or "").split()
    if len(ssh) == 4:  # client ip, client port, server ip, server port
        host = ssh[2]
    extra = f" -p {ssh[3]}" if len(ssh) == 4 and ssh[3] != "22" else ""
    return f"ssh -L {port}:localhost:{port}{extra} {getpass.getuser()}@{host}"


def _check_port(address: str, port: int) -> None:
    if not 1 <= port <= 65535:
        raise BadArgumentError(f"--port {port} is not a TCP port: use 1..65535")
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind(("127.0.0.1" if address == "localhost" else address, port))
        except OSError:
            raise BadArgumentError(
                f"port {port} is already in use: pass another one with --port"
            ) from None


def run(args: argparse.Namespace) -> int:
    from ..web.access import check_inside, is_local_address

    if not Path(args.runs_root).is_dir():
        raise BadArgumentError(f"--runs_root {args.runs_root} is not a folder")
    if args.run_dir:
        from ..store import open_run

        if not is_local_address(args.address):
            check_inside(args.run_dir, args.runs_root, "--run_dir")
        open_run(args.run_dir)  # a missing or unfinished run fails here, in one line
    if args.atlas:
        from ..atlas import open_atlas

        if not is_local_address(args.address):
            check_inside(args.atlas, args.runs_root, "--atlas")
        open_atlas(args.atlas)  # not an atlas, or unfinished: one line
    if args.neuron_records:
        from ..export.records import open_neuron_records

        if not is_local_address(args.address):
            check_inside(args.neuron_records, args.runs_root, "--neuron_records")
        open_neuron_records(args.neuron_records)  # no record files: one line
    _check_port(args.address, args.port)
    headless = args.no_browser or not has_display()
    host = "localhost" if is_local_address(args.address) else socket.gethostname()
    lines = [f"starting the web app on http://{host}:{args.port} (Ctrl+C to stop)"]
    if headless and not args.no_browser:
        lines.append(
            "no display here (ssh or no terminal): open it from your own machine through a "
            f"tunnel, `{tunnel_hint(args.port)}`, then http://localhost:{args.port}"
        )
    print("\n".join(lines), flush=True)
    return serve(streamlit_command(args, headless))


def serve(cmd: list[str]) -> int:
    """Run Streamlit until it exits; Ctrl+C or SIGTERM stop it too (never left orphaned).

    Streamlit gets no stdin, so nothing it might ask can block it.
    """

    def _on_term(signum: int, frame: FrameType | None) -> None:
        raise SystemExit(128 + signum)

    previous = signal.signal(signal.SIGTERM, _on_term)
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL)
    try:
        return proc.wait()
    except KeyboardInterrupt:  # Ctrl+C reached Streamlit too; it is shutting down
        return 130
    finally:
        signal.signal(signal.SIGTERM, previous)
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
