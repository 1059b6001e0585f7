"""A real multi-node Ray cluster on 127.0.0.1 for the ``cluster`` tests.

Each node is its own ``ray start --block`` (its own GCS or raylet, object store, agents), in its
own session (process group) and its own ``--temp-dir``, with one CPU, a small object store and a
custom resource named after the node (``node_head``, ``node_b``) so a test can tell where work
ran. The head also serves the Ray client (``ray://``) and the dashboard's job API, all on
127.0.0.1. A node is stopped by killing its process group, then any process left whose command
line names its private temp dir (Ray's own ``ray stop`` would stop every Ray on the machine).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[2]
RAY = str(Path(sys.executable).with_name("ray"))
NODE_SCRIPT = str(Path(__file__).with_name("ray_node.py"))
LOOPBACK_IPS = {"127.0.0.1", "::ffff:127.0.0.1", "::1"}
START_TIMEOUT_S = 120.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Node:
    name: str
    proc: subprocess.Popen[bytes]
    temp_dir: Path
    log: Path

    def pids(self) -> set[int]:
        """Every live process of this node: its process group and whatever names its temp dir."""
        out = set()
        for p in psutil.process_iter(["pid", "cmdline"]):
            try:
                if os.getpgid(p.pid) == self.proc.pid or str(self.temp_dir) in " ".join(
                    p.info["cmdline"] or []
                ):
                    out.add(p.pid)
            except (ProcessLookupError, psutil.Error):
                continue
        return out

    def kill(self) -> None:
        """SIGKILL every process of the node (a node lost, or the test's cleanup)."""
        for _ in range(3):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            for pid in self.pids():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=5)
            if not self.pids():
                return
            time.sleep(0.5)


@dataclass
class LoopbackCluster:
    """A head and worker nodes on 127.0.0.1; every process is this object's to stop."""

    gcs_port: int = field(default_factory=free_port)
    client_port: int = field(default_factory=free_port)
    dashboard_port: int = field(default_factory=free_port)
    nodes: dict[str, Node] = field(default_factory=dict)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.gcs_port}"

    @property
    def client_address(self) -> str:
        return f"ray://127.0.0.1:{self.client_port}"

    @property
    def dashboard(self) -> str:
        return f"http://127.0.0.1:{self.dashboard_port}"

    def env(self, **extra: str) -> dict[str, str]:
        """The environment of the nodes and of the tests' drivers (offline, this checkout)."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
        env.update(
            HF_HUB_OFFLINE="1",
            TRANSFORMERS_VERBOSITY="error",
            PYTHONPATH=str(ROOT),
            RAY_USAGE_STATS_ENABLED="0",
            RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER="0",
            OMP_NUM_THREADS="1",
        )
        env.update(extra)
        return env

    def start_head(self) -> Node:
        args = [
            RAY, "start", "--head", "--port", str(self.gcs_port),
            "--ray-client-server-port", str(self.client_port),
            "--dashboard-host", "127.0.0.1", "--dashboard-port", str(self.dashboard_port),
        ]  # fmt: skip
        return self._start("head", args, self.env(NS_TEST_NODE="head"))

    def add_node(self, name: str, private_dir: Path | None = None) -> Node:
        """A worker node; with ``private_dir``, the node's processes see an empty folder of
        their own there (a tmpfs in a private mount namespace): a disk the driver cannot see."""
        args = [sys.executable, NODE_SCRIPT, "start", "--address", self.address]
        if private_dir is not None:
            mount = 'mount -t tmpfs none "$0" && exec "$@"'
            args = ["unshare", "--mount", "--propagation", "private", "sh", "-c", mount,
                    str(private_dir), *args]  # fmt: skip
        # ray_node.py joins with Ray's cluster switch on and its loopback rewrite off
        return self._start(name, args, self.env(RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER="1",
                                                NS_TEST_NODE=name))  # fmt: skip

    def _start(self, name: str, args: list[str], env: dict[str, str]) -> Node:
        temp = Path(tempfile.mkdtemp(prefix=f"rc{name[:4]}.", dir="/tmp"))  # short: socket paths
        log = temp / "start.log"
        args += [
            "--block", "--node-ip-address", "127.0.0.1", "--num-cpus", "1",
            "--resources", json.dumps({f"node_{name}": 1}), "--temp-dir", str(temp),
            "--object-store-memory", str(80 * 2**20), "--disable-usage-stats",
            "--dashboard-agent-listen-port", str(free_port()),
        ]  # fmt: skip
        with open(log, "wb") as f:
            proc = subprocess.Popen(
                args, env=env, stdout=f, stderr=subprocess.STDOUT, start_new_session=True,
                cwd=temp,
            )  # fmt: skip
        node = Node(name, proc, temp, log)
        self.nodes[name] = node
        self._wait_up(node)
        return node

    def _wait_up(self, node: Node) -> None:
        """Until the node's custom resource shows in the cluster (or its start failed)."""
        t0 = time.monotonic()
        while time.monotonic() - t0 < START_TIMEOUT_S:
            if node.proc.poll() is not None:
                raise RuntimeError(f"ray start {node.name} failed: {node.log.read_text()[-2000:]}")
            started = "Ray runtime started" in node.log.read_text(errors="replace")
            if started and (node.name == "head" or f"node_{node.name}" in self.alive_resources()):
                return
            time.sleep(1)
        raise RuntimeError(f"ray node {node.name} did not start: {node.log.read_text()[-2000:]}")

    def alive_resources(self) -> str:
        """``ray status`` of the cluster (its resources), as text."""
        r = subprocess.run(
            [RAY, "status", "--address", self.address], env=self.env(), capture_output=True,
            text=True, timeout=60,
        )  # fmt: skip
        return r.stdout

    def listening(self) -> list[tuple[str, str, int]]:
        """``(process, ip, port)`` of every listening TCP socket of every node's processes."""
        out = []
        for node in self.nodes.values():
            for pid in node.pids():
                try:
                    p = psutil.Process(pid)
                    conns, name = p.net_connections(kind="tcp"), p.name()
                except psutil.Error:
                    continue
                out += [
                    (name, c.laddr.ip, c.laddr.port)
                    for c in conns
                    if c.status == psutil.CONN_LISTEN
                ]
        return out

    def stop(self) -> None:
        for node in reversed(list(self.nodes.values())):
            node.kill()
        self.nodes.clear()
