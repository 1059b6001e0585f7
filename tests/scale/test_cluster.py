"""The local Ray (the product's and the tests') listens on 127.0.0.1 only: Ray has no
authentication, so a port on the network is code execution for anyone who reaches it."""

from __future__ import annotations

import os
from pathlib import Path
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


@pytest.mark.parametrize(
    ("address", "loopback"),
    [
        ("127.0.0.1:6379", True),
        ("localhost:6379", True),
        ("ray://127.0.0.1:10001", True),
        ("[::1]:6379", True),
        ("10.0.0.5:6379", False),
        ("ray://head:10001", False),
    ],
)
def test_is_loopback(address: str, loopback: bool) -> None:
    from neuron_signatures.scale.cluster import is_loopback

    assert is_loopback(address) is loopback


def test_resolve_address(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """``auto`` is RAY_ADDRESS, else the address file of the last cluster started here; Ray
    lets RAY_ADDRESS win over a given address too."""
    from neuron_signatures.scale import cluster

    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.setattr(cluster.tempfile, "gettempdir", lambda: str(tmp_path))
    assert cluster.resolve_address("auto") == "auto"  # nothing to resolve: Ray says why
    (tmp_path / "ray").mkdir()
    (tmp_path / "ray" / "ray_current_cluster").write_text("127.0.0.1:6380\n")
    assert cluster.resolve_address("auto") == "127.0.0.1:6380"
    assert cluster.resolve_address("10.0.0.5:6379") == "10.0.0.5:6379"
    monkeypatch.setenv("RAY_ADDRESS", "10.0.0.7:6379")
    assert cluster.resolve_address("auto") == "10.0.0.7:6379"
    assert cluster.resolve_address("127.0.0.1:1") == "10.0.0.7:6379"


class JoiningRay:
    """``ray.init`` records the loopback switch it ran under, or raises ``error``."""

    def __init__(self, error: BaseException | None = None) -> None:
        self.error, self.calls = error, []  # type: ignore[var-annotated]

    def is_initialized(self) -> bool:
        return False

    def init(self, **kw: Any) -> None:
        self.calls.append({**kw, "switch": os.environ.get(CLUSTER_SWITCH)})
        if self.error:
            raise self.error


def test_loopback_cluster_is_joined_with_the_switch_off(monkeypatch: pytest.MonkeyPatch) -> None:
    """With the switch on, Ray rewrites 127.0.0.1 into the machine's network address (where a
    loopback cluster does not listen) and opens the driver's ports on every interface."""
    from neuron_signatures.scale.cluster import init_ray

    monkeypatch.delenv(CLUSTER_SWITCH, raising=False)
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    ray = JoiningRay()
    assert init_ray(ray, "127.0.0.1:6379", None) is True
    assert ray.calls[0]["switch"] == "0" and ray.calls[0]["address"] == "127.0.0.1:6379"
    assert CLUSTER_SWITCH not in os.environ  # restored
    init_ray(ray, "10.0.0.5:6379", None)
    assert ray.calls[1]["switch"] is None


def test_version_mismatch_is_wrapped_in_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    """Ray's own mismatch error (made by Ray's check, with a faked cluster version) becomes one
    line with both versions and what to install."""
    import ray._private.utils as ray_utils

    from neuron_signatures.errors import BadArgumentError
    from neuron_signatures.scale.cluster import init_ray

    _, python = ray_utils.compute_version_info()
    with pytest.raises(RuntimeError) as raised:
        ray_utils.check_version_info(
            {"ray_version": "2.57.0", "python_version": python}, "127.0.0.1:6379"
        )
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    with pytest.raises(BadArgumentError) as e:
        init_ray(JoiningRay(raised.value), "10.0.0.5:6379", None)
    msg = str(e.value)
    assert "\n" not in msg and "Version mismatch" in msg
    assert "Ray: 2.57.0" in msg and "pip install 'ray[default]==2.57.0'" in msg


def test_no_cluster_there_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    from neuron_signatures.errors import BadArgumentError
    from neuron_signatures.scale.cluster import init_ray

    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    err = ConnectionError("Could not find any running Ray instance.\nPlease specify the one")
    with pytest.raises(BadArgumentError) as e:
        init_ray(JoiningRay(err), "auto", None)
    msg = str(e.value)
    assert "\n" not in msg and "cannot join the Ray cluster at auto" in msg
    assert "Could not find any running Ray instance. Please specify" in msg
