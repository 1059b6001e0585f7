"""``--engine ray`` on a real two-node Ray cluster on 127.0.0.1 (marker ``cluster``: `make
test-cluster`): started with ``ray start``, joined by address, through the Ray client and by
``ray job submit`` from separate driver processes; a node lost mid-build, a driver killed and
resumed. Every port of every node and driver listens on 127.0.0.1 only; every process is stopped
by the fixture that started it, even when a test fails."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.atlas.conftest import SMALL, atlas_bytes, config
from tests.scale.loopback import LOOPBACK_IPS, RAY, LoopbackCluster
from tests.tiny_models import exact_dump_args

pytest.importorskip("ray")
pytestmark = [pytest.mark.cluster, pytest.mark.timeout(600)]
DRIVER = str(Path(__file__).with_name("cluster_driver.py"))
RUN_TIMEOUT_S = 400


@pytest.fixture(scope="module")
def cluster() -> Iterator[LoopbackCluster]:
    c = LoopbackCluster()
    try:
        c.start_head()
        c.add_node("b")
        yield c
    finally:
        c.stop()


@pytest.fixture
def two_nodes(cluster: LoopbackCluster) -> LoopbackCluster:
    """The cluster with both nodes up (a test before may have taken them away)."""
    if any(n not in cluster.nodes or cluster.nodes[n].proc.poll() is not None
           for n in ("head", "b")):  # fmt: skip
        cluster.stop()
        cluster.start_head()
        cluster.add_node("b")
    return cluster


@pytest.fixture(scope="module")
def single(
    tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path, corpus_txt: Path
) -> Path:
    from neuron_signatures.atlas.build import build_atlas

    out = tmp_path_factory.mktemp("single") / "atlas"
    return build_atlas(config(out, corpus_txt, model_name=str(tiny_model_dir)))


def atlas_argv(out: Path, model: Path, corpus: Path, address: str) -> list[str]:
    flags = [f"--{k}={v}" for k, v in SMALL.items() if k != "progress"]
    return [
        sys.executable, "-m", "neuron_signatures", "atlas", "--corpus", str(corpus),
        "--out_dir", str(out), *flags, "--model_name", str(model), "--no_progress",
        "--engine", "ray", "--ray_address", address, "--workers", "2", "--units", "4",
    ]  # fmt: skip


def run(argv: list[str], cluster: LoopbackCluster, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        argv, env=cluster.env(**env), capture_output=True, text=True, timeout=RUN_TIMEOUT_S,
        cwd=Path(__file__).resolve().parents[2],
    )  # fmt: skip


def nodes_with_units(out: Path) -> dict[str, int]:
    """Custom resource of each node (``node_head``, ``node_b``) → units it built."""
    log = json.loads((out / "build.json").read_text())
    got: dict[str, int] = {}
    for n in log["nodes"].values():
        for r in n["resources"]:
            got[r] = got.get(r, 0) + n["units"]
    return got


def test_every_port_of_nodes_and_driver_is_on_loopback(two_nodes: LoopbackCluster) -> None:
    """Two nodes (each its own raylet), a driver joined by address through ``init_ray``: every
    listening socket of all of them is on 127.0.0.1."""
    code = (
        "import json, os, ray, psutil\n"
        "from neuron_signatures.scale.cluster import init_ray, node_addresses\n"
        f"init_ray(ray, {two_nodes.address!r}, None)\n"
        "@ray.remote(num_cpus=0, resources={'node_b': 0.01})\n"
        "def where(): return ray.get_runtime_context().get_node_id()\n"
        "node = ray.get(where.remote())\n"
        "socks = [c.laddr.ip for c in psutil.Process().net_connections('tcp')"
        " if c.status == psutil.CONN_LISTEN]\n"
        "print(json.dumps({'nodes': node_addresses(ray), 'socks': socks, 'node': node}))\n"
        "ray.shutdown()\n"
    )
    r = run([sys.executable, "-c", code], two_nodes)
    assert r.returncode == 0, r.stderr[-3000:]
    got = json.loads(r.stdout.strip().splitlines()[-1])
    assert got["nodes"] == ["127.0.0.1", "127.0.0.1"]
    assert got["socks"] and set(got["socks"]) <= LOOPBACK_IPS  # the driver's own ports
    socks = two_nodes.listening()
    names = {n for n, _, _ in socks}
    assert {"gcs_server", "raylet"} <= names
    raylets = {p for n, _, p in socks if n == "raylet"}
    assert len(raylets) >= 2  # one raylet per node, each with its ports
    assert [s for s in socks if s[1] not in LOOPBACK_IPS] == []


def test_atlas_from_a_separate_driver_by_address(
    two_nodes: LoopbackCluster, single: Path, tiny_model_dir: Path, corpus_txt: Path,
    tmp_path: Path,
) -> None:  # fmt: skip
    out = tmp_path / "by-address"
    r = run(atlas_argv(out, tiny_model_dir, corpus_txt, two_nodes.address), two_nodes)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "wrote" in r.stdout
    assert "ray: 4 of 4 units built on 2 workers across 2 node(s)" in r.stdout
    assert atlas_bytes(out) == atlas_bytes(single)
    units = nodes_with_units(out)
    assert units.get("node_head", 0) >= 1 and units.get("node_b", 0) >= 1, units
    log = json.loads((out / "build.json").read_text())
    assert all(w["cpu_s"] > 0 for w in log["per_worker"].values())
    assert log["driver_cpu_s"] == pytest.approx(
        log["driver_setup_cpu_s"] + log["driver_ray_cpu_s"], abs=0.01
    )


def test_atlas_through_the_ray_client(
    two_nodes: LoopbackCluster, single: Path, tiny_model_dir: Path, corpus_txt: Path,
    tmp_path: Path,
) -> None:  # fmt: skip
    out = tmp_path / "client"
    r = run(atlas_argv(out, tiny_model_dir, corpus_txt, two_nodes.client_address), two_nodes)
    assert r.returncode == 0, r.stderr[-3000:]
    assert atlas_bytes(out) == atlas_bytes(single)
    assert sum(nodes_with_units(out).values()) == 4
    # the client server's per-client process listened on loopback too
    assert [s for s in two_nodes.listening() if s[1] not in LOOPBACK_IPS] == []


def test_atlas_by_ray_job_submit(
    two_nodes: LoopbackCluster, single: Path, tiny_model_dir: Path, corpus_txt: Path,
    tmp_path: Path,
) -> None:  # fmt: skip
    """The dashboard's job API on 127.0.0.1 runs the CLI on the head; it finds the cluster
    with ``--ray_address auto`` (the job's ``RAY_ADDRESS``)."""
    out = tmp_path / "job"
    cmd = atlas_argv(out, tiny_model_dir, corpus_txt, "auto")
    r = run([RAY, "job", "submit", "--address", two_nodes.dashboard, "--", *cmd], two_nodes)
    assert r.returncode == 0, (r.stdout + r.stderr)[-3000:]
    assert "succeeded" in r.stdout.lower()
    assert [s for s in two_nodes.listening() if s[1] not in LOOPBACK_IPS] == []  # job agents
    assert atlas_bytes(out) == atlas_bytes(single)
    units = nodes_with_units(out)
    assert units.get("node_head", 0) >= 1 and units.get("node_b", 0) >= 1, units


def test_dump_on_the_cluster(
    two_nodes: LoopbackCluster, tiny_run: Path, tiny_model_dir: Path, prompts_file: Path,
    tmp_path: Path,
) -> None:  # fmt: skip
    from tests.scale.test_ray_dump import run_files

    out = tmp_path / "dump"
    argv = [sys.executable, "-m", "neuron_signatures", "dump",
            *exact_dump_args(prompts_file, out, tiny_model_dir), "--batch_size", "2",
            "--engine", "ray", "--ray_address", two_nodes.address, "--workers", "2"]  # fmt: skip
    r = run(argv, two_nodes)
    assert r.returncode == 0, r.stderr[-3000:]
    assert run_files(out) == run_files(tiny_run)


def build_log(stdout: str) -> Any:
    """The ``build.json`` the test driver printed (Ray's own notices, such as a node marked
    dead, may come before it)."""
    (line,) = [ln for ln in stdout.splitlines() if ln.startswith("BUILD ")]
    return json.loads(line.removeprefix("BUILD "))


def driver_argv(out: Path, model: Path, corpus: Path, address: str, *extra: str) -> list[str]:
    return [sys.executable, DRIVER, "--out", str(out), "--model", str(model), "--corpus",
            str(corpus), "--address", address, *extra]  # fmt: skip


def wait_for(cond: Any, proc: subprocess.Popen[str], what: str, timeout_s: float = 300) -> None:
    t0 = time.monotonic()
    while not cond():
        if proc.poll() is not None:
            raise AssertionError(f"the driver ended before {what}: {proc.communicate()}")
        if time.monotonic() - t0 > timeout_s:
            raise AssertionError(f"no {what} after {timeout_s} s")
        time.sleep(0.2)


def finished_parts(parts: Path) -> list[str]:
    """The finished units and spans of a Ray build's staging folder."""
    if not parts.is_dir():
        return []
    names = [p.name for p in parts.iterdir()]
    return [n for n in names if n.startswith(("unit_", "span_")) and ".tmp" not in n]


def test_driver_killed_mid_build_resumes(
    two_nodes: LoopbackCluster, single: Path, tiny_model_dir: Path, corpus_txt: Path,
    tmp_path: Path,
) -> None:  # fmt: skip
    """SIGKILL the driver once a unit is on disk (its actors die with it); ``--resume`` against
    the same cluster keeps that unit and gives the one-process bytes."""
    out = tmp_path / "killed-driver"
    argv = driver_argv(out, tiny_model_dir, corpus_txt, two_nodes.address, "--slow", "0.5")
    proc = subprocess.Popen(argv, env=two_nodes.env(), text=True, start_new_session=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # fmt: skip
    try:
        wait_for(lambda: finished_parts(out / "parts"), proc, "a finished unit")
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
    assert not (out / "atlas.json").exists()
    r = run(driver_argv(out, tiny_model_dir, corpus_txt, two_nodes.address, "--resume"),
            two_nodes)  # fmt: skip
    assert r.returncode == 0, r.stderr[-3000:]
    log = build_log(r.stdout)
    assert log["units_skipped"] >= 1 and log["units_run"] == log["units"] - log["units_skipped"]
    assert atlas_bytes(out) == atlas_bytes(single)


def test_version_mismatch_is_one_line(two_nodes: LoopbackCluster) -> None:
    """A driver whose Ray is another version than the cluster's (faked in the driver) gets
    Ray's own mismatch error on one line, with the version to install."""
    code = (
        "import sys, ray, ray._private.utils as u\n"
        "real = u.compute_version_info\n"
        "u.compute_version_info = lambda: ('0.0.1', real()[1])\n"
        "from neuron_signatures.scale.cluster import init_ray\n"
        "from neuron_signatures.errors import NeuronSignaturesError\n"
        "try:\n"
        f"    init_ray(ray, {two_nodes.address!r}, None)\n"
        "except NeuronSignaturesError as e:\n"
        "    print(e); sys.exit(2)\n"
    )
    r = run([sys.executable, "-c", code], two_nodes)
    assert r.returncode == 2, (r.stdout + r.stderr)[-3000:]
    line = r.stdout.strip()
    assert "\n" not in line and "Version mismatch" in line
    assert "pip install 'ray[default]==2.58.0'" in line and "Ray: 0.0.1" in line


def test_worker_that_cannot_see_the_output_folder_is_refused(
    two_nodes: LoopbackCluster, tiny_model_dir: Path, corpus_txt: Path, tmp_path: Path
) -> None:
    """A third node whose processes see their own empty disk at the output folder's path (a
    tmpfs in a private mount namespace): the build stops before any work with one line that
    says to use shared storage, and leaves no probe file behind."""
    can = shutil.which("unshare") and subprocess.run(
        ["unshare", "--mount", "--propagation", "private", "true"], capture_output=True
    ).returncode == 0  # fmt: skip
    if not can:
        pytest.skip("needs unshare --mount (util-linux, as root) to give a node a private disk")
    private = tmp_path / "private"
    private.mkdir()
    node = two_nodes.add_node("c", private_dir=private)
    try:
        out = private / "atlas"
        argv = atlas_argv(out, tiny_model_dir, corpus_txt, two_nodes.address)
        argv[argv.index("--workers") + 1] = "3"  # one worker on each node
        r = run(argv, two_nodes)
    finally:
        node.kill()
        two_nodes.nodes.pop("c", None)
    assert r.returncode == 2, (r.stdout + r.stderr)[-3000:]
    line = r.stderr.strip().splitlines()[-1]
    assert "1 of 3 Ray workers cannot share the output folder" in line, line
    assert "is not there" in line and "storage every node mounts at the same path" in line
    assert not (out / "atlas.json").exists() and not list(out.glob(".shared-probe-*"))


def test_node_lost_mid_build(
    two_nodes: LoopbackCluster, single: Path, tiny_model_dir: Path, corpus_txt: Path,
    tmp_path: Path,
) -> None:  # fmt: skip
    """The worker node is SIGKILLed (raylet, object store, its worker) while its worker holds a
    unit: the unit is resubmitted to the head's worker, the atlas is the one process's bytes,
    and the build's summary counts the resubmission."""
    out, marker = tmp_path / "node-lost", tmp_path / "holding"
    argv = driver_argv(out, tiny_model_dir, corpus_txt, two_nodes.address,
                       "--hold_on", "b", "--marker", str(marker))  # fmt: skip
    proc = subprocess.Popen(argv, env=two_nodes.env(), text=True, start_new_session=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # fmt: skip
    try:
        wait_for(Path(f"{marker}.b").exists, proc, "node b holding a unit")
        two_nodes.nodes["b"].kill()
        stdout, stderr = proc.communicate(timeout=RUN_TIMEOUT_S)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
    assert proc.returncode == 0, stderr[-3000:]
    log = build_log(stdout)
    assert log["resubmitted"] >= 1
    assert atlas_bytes(out) == atlas_bytes(single)
    units = nodes_with_units(out)
    assert units == {"node_head": 4}, units  # the lost unit was built again on the head


def test_every_node_lost_stops_in_bounded_time_with_one_line(
    two_nodes: LoopbackCluster, tiny_model_dir: Path, corpus_txt: Path, tmp_path: Path
) -> None:
    """Both nodes SIGKILLed while each worker holds a unit: the driver stops by itself, exit 2,
    with one line naming the lost head and the unfinished units and the resume command (Ray
    alone would end the driver a minute later, exit 1, with a multi-line log)."""
    out, marker = tmp_path / "all-lost", tmp_path / "holding"
    argv = driver_argv(out, tiny_model_dir, corpus_txt, two_nodes.address,
                       "--hold_on", "head,b", "--marker", str(marker))  # fmt: skip
    proc = subprocess.Popen(argv, env=two_nodes.env(), text=True, start_new_session=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # fmt: skip
    try:
        both = (Path(f"{marker}.head"), Path(f"{marker}.b"))
        wait_for(lambda: all(m.exists() for m in both), proc, "both nodes holding a unit")
        t0 = time.monotonic()
        two_nodes.nodes["b"].kill()
        two_nodes.nodes["head"].kill()
        _, stderr = proc.communicate(timeout=RUN_TIMEOUT_S)
        elapsed = time.monotonic() - t0
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
    assert proc.returncode == 2, stderr[-3000:]
    line = stderr.strip().splitlines()[-1]
    assert line.startswith("error: the Ray cluster is gone (its head, GCS 127.0.0.1:")
    assert "not finished: units 0-3;" in line and line.endswith("then run: RESUME")
    assert "Traceback" not in stderr
    assert elapsed < 55, elapsed  # before Ray's own 60 s end of a driver without its GCS
    assert not (out / "atlas.json").exists()
