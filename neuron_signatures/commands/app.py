"""``app``: start the Streamlit web app on a run folder (``python -m streamlit run web/app.py``)."""

from __future__ import annotations

import argparse
import signal
import socket
import subprocess
import sys
from pathlib import Path
from types import FrameType

from ..errors import BadArgumentError

NAME = "app"
HELP = "open the web app (Streamlit) to explore neurons across the prompts of a run"
ORDER = 45


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--run_dir", default=None, help="run folder to open (default: pick one in the sidebar)"
    )
    p.add_argument(
        "--runs_root", default="runs", help="folder the sidebar lists runs from (default: runs)"
    )
    p.add_argument("--port", type=int, default=8501, help="local port (default: 8501)")
    p.add_argument(
        "--address",
        default="localhost",
        help="address to listen on (default: localhost; 0.0.0.0 to share)",
    )
    p.add_argument("--no_browser", action="store_true", help="do not open a browser tab")


def streamlit_command(args: argparse.Namespace) -> list[str]:
    """The ``python -m streamlit run`` command line for these arguments."""
    from ..web import APP_SCRIPT

    cmd = [
        sys.executable,
        "-m",
        "streamlit",
        "run",
        str(APP_SCRIPT),
        "--server.port",
        str(args.port),
        "--server.address",
        args.address,
        "--server.headless",
        "true" if args.no_browser else "false",
        "--browser.gatherUsageStats",
        "false",
        "--",
        "--runs_root",
        str(args.runs_root),
    ]
    if args.run_dir:
        cmd += ["--run_dir", str(Path(args.run_dir).resolve())]
    return cmd


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
    if args.run_dir:
        from ..store import open_run

        open_run(args.run_dir)  # a missing or unfinished run fails here, in one line
    _check_port(args.address, args.port)
    print(f"starting the web app on http://{args.address}:{args.port} (Ctrl+C to stop)")
    return serve(streamlit_command(args))


def serve(cmd: list[str]) -> int:
    """Run Streamlit until it exits; Ctrl+C or SIGTERM stop it too (never left orphaned)."""

    def _on_term(signum: int, frame: FrameType | None) -> None:
        raise SystemExit(128 + signum)

    previous = signal.signal(signal.SIGTERM, _on_term)
    proc = subprocess.Popen(cmd)
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
