"""Drive the web app in headless Chromium: start Streamlit, dump the DOM, take a screenshot.

Used by the browser test and to refresh the README screenshots::

    python -m tests.web.browser --out docs/img/web.png [--run_dir runs/demo]
    python -m tests.web.browser --out docs/img/web_atlas.png --atlas atlases/demo \
        --query "layer=12&neuron=1866"

Every process started here is stopped by its id with bounded waits, whatever happens.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from neuron_signatures.web import APP_SCRIPT

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--hide-scrollbars", "--virtual-time-budget=20000", "--enable-logging=stderr", "--v=0",
]  # fmt: skip


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _stop(proc: subprocess.Popen, group: bool = False) -> None:
    """Terminate, then kill, the process (or the process group it leads) we started."""
    if proc.poll() is not None:
        return
    for sig, wait in ((signal.SIGTERM, 10), (signal.SIGKILL, 5)):
        try:
            os.killpg(proc.pid, sig) if group else proc.send_signal(sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


@contextmanager
def streamlit_app(
    run_dir: Path | None, log_path: Path, timeout: float = 90, atlas: Path | None = None
) -> Iterator[str]:
    """Serve the app (on a run, an atlas or both) on a free localhost port; yields its URL once
    /_stcore/health answers."""
    port = free_port()
    cmd = [
        sys.executable, "-m", "streamlit", "run", str(APP_SCRIPT),
        "--server.port", str(port), "--server.address", "127.0.0.1",
        "--server.headless", "true", "--browser.gatherUsageStats", "false",
        "--server.fileWatcherType", "none", "--",
    ]  # fmt: skip
    if run_dir is not None:
        cmd += ["--run_dir", str(run_dir)]
    if atlas is not None:
        cmd += ["--atlas", str(atlas)]
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            url = f"http://127.0.0.1:{port}"
            deadline = time.monotonic() + timeout
            while not _healthy(url):
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"streamlit did not start; see {log_path}")
                time.sleep(0.5)
            yield url
        finally:
            _stop(proc, group=True)


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as r:
            return r.status == 200
    except OSError:
        return False


def chromium(args: list[str], profile: Path, timeout: float = 90) -> str:
    """Run headless Chromium once with a fresh profile; returns its stdout. The page's console
    messages go to ``profile/console.log`` (Chromium's stderr log)."""
    cmd = [str(CHROMIUM), *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args]
    profile.mkdir(parents=True, exist_ok=True)
    with open(profile / "console.log", "wb") as err:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=err, start_new_session=True)
        try:
            out, _ = proc.communicate(timeout=timeout)
        finally:
            _stop(proc, group=True)
    return out.decode("utf-8", "replace")


def console_messages(profile: Path) -> list[str]:
    """The page's console messages of one Chromium run (``INFO:CONSOLE`` lines of its log)."""
    log = profile / "console.log"
    text = log.read_text(errors="replace") if log.is_file() else ""
    return [line for line in text.splitlines() if ":CONSOLE" in line]


def capture(
    url: str, png: Path, work: Path, ready: str, tries: int = 6, size: str = "1400,2600"
) -> str:
    """Load the page with ``--dump-dom`` and ``--screenshot`` in one Chromium run, again until
    the script finished and ``ready`` is in the DOM (the first visit also warms the server up).

    Returns the last DOM; the screenshot of that same visit is at ``png``.
    """
    png.parent.mkdir(parents=True, exist_ok=True)
    dom = ""
    for i in range(tries):
        png.unlink(missing_ok=True)
        args = [f"--window-size={size}", "--dump-dom", f"--screenshot={png}", url]
        dom = chromium(args, work / f"profile{i}")
        if 'data-test-script-state="notRunning"' in dom and ready in dom and png.is_file():
            break
    return dom


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=Path("docs/img/web.png"))
    p.add_argument("--run_dir", type=Path, default=None, help="default: the test run")
    p.add_argument("--atlas", type=Path, default=None, help="an atlas: its neuron page")
    p.add_argument("--query", default="", help="URL query, e.g. layer=12&neuron=1866")
    p.add_argument("--size", default="1400,2600", help="window width,height in pixels")
    args = p.parse_args(argv)
    ready = 'class="nsa-examples"' if args.atlas else 'class="nsh-cell"'
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        run_dir = args.run_dir
        if run_dir is None and args.atlas is None:
            from tests.web.fixtures import make_run

            run_dir = make_run(work / "demo")
        atlas = args.atlas.resolve() if args.atlas else None
        with streamlit_app(
            run_dir and run_dir.resolve(), work / "streamlit.log", atlas=atlas
        ) as url:
            page = f"{url}/?{args.query}" if args.query else url
            dom = capture(page, args.out.resolve(), work, ready, size=args.size)
            if ready not in dom:
                print("the page did not render; see the streamlit log", file=sys.stderr)
                return 1
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
