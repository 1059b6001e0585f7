"""Start a local Ray that only this machine can reach, or join the user's cluster.

Ray has no authentication: whoever reaches its ports (GCS, raylet, object manager, workers,
agents, dashboard) can run code on the machine (the "ShadowRay" attacks on exposed clusters). So
a Ray started here listens on 127.0.0.1 only:

1. On Linux, Ray 2.x turns a loopback node address into the machine's network address
   (``ray._private.services.resolve_ip_for_localhost``, also for ``ray start
   --node-ip-address 127.0.0.1``), and its gRPC servers then listen on every interface. It keeps
   loopback only while its "no cluster" switch is off: the variable
   ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0``, read once into
   ``ray._private.ray_constants.ENABLE_RAY_CLUSTER``.
2. :func:`start_local_ray` turns the switch off for the start only (the processes Ray starts
   inherit the variable), asks for node address 127.0.0.1 with no dashboard, then restores both,
   so that a later ``ray.init(address=...)`` in this process still finds the machine's address.
3. It then reads every node's address back from Ray and refuses to run (shutting Ray down)
   unless it is 127.0.0.1, so a Ray that changes this mechanism fails closed.

Joining a cluster (``address``) keeps that cluster's own choice: keeping it private is the
cluster owner's part (see the README). A cluster on this machine's loopback (``127.0.0.1:P``, or
``auto`` resolving to it) is joined with the switch off too: with it on, Ray would rewrite the
address to the machine's network address, where such a cluster does not listen, and open the
driver's own ports on every interface. Ray's own errors on joining (no cluster there, another
Ray or Python version) become one line that names the fix.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ..errors import BadArgumentError, NeuronSignaturesError

LOOPBACK = "127.0.0.1"
CLUSTER_SWITCH = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"


def init_ray(ray: Any, address: str | None, workers: int | None) -> bool:
    """Join ``address`` or start a quiet local Ray on loopback; ``True`` if this call started
    it (the caller then shuts it down)."""
    if ray.is_initialized():
        return False
    if not address:
        start_local_ray(ray, workers or 2)
        return True
    join_ray(ray, address)
    return True


def join_ray(ray: Any, address: str) -> None:
    """``ray.init(address)``: a GCS ``host:port``, ``auto`` or a client ``ray://host:port``.

    Raises:
        BadArgumentError: no cluster answers there, or it runs another Ray or Python version.
    """
    loopback = is_loopback(resolve_address(address))
    try:
        with _loopback_node(ray) if loopback else contextlib.nullcontext():
            ray.init(address=address, logging_level=logging.WARNING, log_to_driver=False)
    except (ConnectionError, RuntimeError, ValueError, TimeoutError) as e:
        raise BadArgumentError(join_error(address, e)) from None


def join_error(address: str, e: BaseException) -> str:
    """Ray's error on joining ``address``, on one line, with the fix."""
    reason = " ".join(str(e).split()) or type(e).__name__
    if "version mismatch" in reason.lower():
        m = re.search(r"cluster was started with: Ray: (\S+) Python: (\S+)", reason)
        ray_v, py_v = (m.group(1), m.group(2)) if m else ("<its version>", "its Python")
        return (
            f"the Ray cluster at {address} runs another version than this driver ({reason}): "
            f"install Ray {ray_v} on Python {py_v} here (pip install 'ray[default]=={ray_v}'), "
            "or submit the command to the cluster with `ray job submit`"
        )
    return (
        f"cannot join the Ray cluster at {address} ({reason}): start it with "
        "`ray start --head`, check the address (host:port of its GCS, ray://host:10001 for a "
        "client, or auto), or drop --ray_address to run a local Ray"
    )


def resolve_address(address: str) -> str:
    """The address ``auto`` stands for (``RAY_ADDRESS``, else the last cluster started on this
    machine); any other address unchanged. ``RAY_ADDRESS`` wins over a given address in Ray."""
    env = os.environ.get("RAY_ADDRESS", "").strip()
    if env:
        return env
    if address != "auto":
        return address
    try:
        return (Path(tempfile.gettempdir()) / "ray" / "ray_current_cluster").read_text().strip()
    except OSError:
        return address


def is_loopback(address: str) -> bool:
    """Whether ``address`` (``host:port``, ``ray://host:port``) names this machine's loopback."""
    host = address.split("://", 1)[-1].rsplit(":", 1)[0].strip("[]")
    return host in ("127.0.0.1", "localhost", "::1")


def start_local_ray(ray: Any, num_cpus: int, object_store_mb: int = 128) -> None:
    """``ray.init`` a single-node Ray whose every port listens on 127.0.0.1 only.

    Raises:
        NeuronSignaturesError: Ray started on another address (it is shut down first).
    """
    with _loopback_node(ray):
        ray.init(
            address="local",  # a new Ray: never join RAY_ADDRESS or /tmp/ray's last cluster
            num_cpus=num_cpus,
            include_dashboard=False,
            dashboard_host=LOOPBACK,
            object_store_memory=object_store_mb * 2**20,
            logging_level=logging.WARNING,
            log_to_driver=False,
            _node_ip_address=LOOPBACK,
        )
    exposed = sorted(set(node_addresses(ray)) - {LOOPBACK})
    if exposed:
        ray.shutdown()
        raise NeuronSignaturesError(
            f"the local Ray started on {', '.join(exposed)}, not {LOOPBACK}: refusing to run an "
            "unauthenticated Ray on the network; start a private one (`"
            f"{CLUSTER_SWITCH}=0 ray start --head --node-ip-address {LOOPBACK}`) and pass "
            "--ray_address auto"
        )


def node_addresses(ray: Any) -> list[str]:
    """The address of every live node of the Ray this process is connected to."""
    return [n["NodeManagerAddress"] for n in ray.nodes() if n.get("Alive", True)]


@contextlib.contextmanager
def _loopback_node(ray: Any) -> Iterator[None]:
    """Ray's "no cluster" switch off (variable and constant) for the duration (see step 1)."""
    constants = getattr(getattr(ray, "_private", None), "ray_constants", None)
    old_env = os.environ.get(CLUSTER_SWITCH)
    old_const = getattr(constants, "ENABLE_RAY_CLUSTER", None)
    os.environ[CLUSTER_SWITCH] = "0"
    if constants is not None:
        constants.ENABLE_RAY_CLUSTER = False
    try:
        yield
    finally:
        if old_env is None:
            os.environ.pop(CLUSTER_SWITCH, None)
        else:
            os.environ[CLUSTER_SWITCH] = old_env
        if constants is not None:
            constants.ENABLE_RAY_CLUSTER = old_const
