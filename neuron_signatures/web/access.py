"""Which folders the web app may open: any on a local address, only the runs root otherwise.

A Streamlit app listening on a non-local address (``--server.address 0.0.0.0``, or no address at
all, which Streamlit binds to every interface) lets anyone who reaches the port type a path into
``run_dir`` or ``analysis_dir``. There, every folder typed (or passed as ``?run_dir=``) must lie
under ``--runs_root`` once symlinks and ``..`` are resolved. Streamlit-free and torch-free.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path

from ..errors import BadArgumentError

LOCAL_NAMES = frozenset({"localhost", "ip6-localhost"})


def is_local_address(address: str | None) -> bool:
    """Whether a server bound to ``address`` is reachable from this machine only.

    ``None`` or ``""`` (Streamlit's default: every interface) and ``0.0.0.0`` / ``::`` are not.
    """
    host = (address or "").strip().strip("[]").lower()
    if host in LOCAL_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_inside(path: str | Path, root: str | Path, what: str = "run_dir") -> Path:
    """``path`` resolved, when it is ``root`` or below it; raises otherwise.

    Raises:
        BadArgumentError: the folder lies outside ``root`` (after resolving symlinks and ``..``).
    """
    base = Path(root).expanduser().resolve()
    full = Path(path).expanduser().resolve()
    if full != base and base not in full.parents:
        raise BadArgumentError(
            f"{what} {path} is outside the runs root {base}: the app listens on a non-local "
            "address, so it only opens folders under --runs_root (restart it with another "
            "--runs_root, or on localhost, to open this one)"
        )
    return full
