"""The local Ray (the product's and the tests') listens on 127.0.0.1 only: Ray has no
authentication, so a port on the network is code execution for anyone who reaches it."""

from __future__ import annotations

import os
from typing import Any

import pytest

from neuron_signatures.scale.cluster import CLUSTER_SWITCH, LOOPBACK, node_addresses

pytest.importorskip("ray")
LOOPBACK_IPS = {LOOPBACK, "::ffff:127.0.0.1", "::1"}


def listening(pids: set[int]) -> list[tuple[str, str, int]]:
    """``(process, ip, port)`` of every listening TCP socket of ``pids``."""
    import psutil

    out = []
    for pid in pids:
        try:
            p = psutil.Process(pid)
            conns = p.net_connections(kind="tcp")
            name = p.name()
        except psutil.NoSuchProcess:
            continue
        out += [(name, c.laddr.ip, c.laddr.port) for c in conns if c.status == psutil.CONN_LISTEN]
    return out


def test_local_ray_listens_on_loopback_only(ray_local: Any) -> None:
    import psutil

    ray = ray_local

    @ray.remote
    class Probe:
        def pid(self) -> int:
            return os.getpid()

    actor = Probe.remote()
    worker_pid = ray.get(actor.pid.remote())
    assert node_addresses(ray) == [LOOPBACK]
    # Every process this one started (GCS, raylet, agents, workers) and this one (the driver).
    pids = {os.getpid(), *(c.pid for c in psutil.Process().children(recursive=True))}
    assert worker_pid in pids
    socks = listening(pids)
    names = {n for n, _, _ in socks}
    assert any("gcs_server" in n for n in names) and any("raylet" in n for n in names)
    assert [s for s in socks if s[1] not in LOOPBACK_IPS] == []
    ray.kill(actor)
    # The switch is back as it was, so that joining a real cluster finds this machine's address.
    assert CLUSTER_SWITCH not in os.environ or os.environ[CLUSTER_SWITCH] != "0"
    assert ray._private.ray_constants.ENABLE_RAY_CLUSTER is True


def test_init_ray_joins_a_given_cluster_unchanged(monkeypatch: pytest.MonkeyPatch) -> None:
    """``--ray_address`` keeps the cluster's own choice: no loopback switch, no node address."""
    from neuron_signatures.scale.cluster import init_ray

    calls: list[dict[str, Any]] = []

    class FakeRay:
        def is_initialized(self) -> bool:
            return False

        def init(self, **kw: Any) -> None:
            calls.append({**kw, "switch": os.environ.get(CLUSTER_SWITCH)})

    monkeypatch.delenv(CLUSTER_SWITCH, raising=False)
    assert init_ray(FakeRay(), "ray://head:10001", None) is True
    assert calls[0]["address"] == "ray://head:10001"
    assert "_node_ip_address" not in calls[0] and calls[0]["switch"] is None


def test_local_ray_never_joins_a_leftover_cluster(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without ``--ray_address`` a new Ray starts, whatever ``RAY_ADDRESS`` or the address file
    of a cluster started earlier on this machine (``/tmp/ray/ray_current_cluster``) name: a plain
    ``ray.init()`` would try to join that cluster, dead or alive."""
    from neuron_signatures.scale.cluster import start_local_ray

    calls: list[dict[str, Any]] = []

    class FakeRay:
        def init(self, **kw: Any) -> None:
            calls.append(kw)

        def nodes(self) -> list[dict[str, Any]]:
            return [{"NodeManagerAddress": "127.0.0.1", "Alive": True}]

    monkeypatch.setenv("RAY_ADDRESS", "127.0.0.1:1")
    start_local_ray(FakeRay(), num_cpus=1)
    assert calls[0]["address"] == "local"
