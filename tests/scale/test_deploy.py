"""The KubeRay manifests in deploy/kuberay/ parse, and the command they run is one our CLI
accepts, with one Ray worker per GPU, everything it reads and writes on the shared volume and
the Ray version the [ray] extra installs."""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Any

import pytest

from neuron_signatures.cli import build_parser

yaml = pytest.importorskip("yaml")
DEPLOY = Path(__file__).resolve().parents[2] / "deploy" / "kuberay"


def load(name: str) -> dict[str, Any]:
    doc = yaml.safe_load((DEPLOY / name).read_text())
    assert isinstance(doc, dict)
    return doc


def test_rayjob_runs_a_command_our_cli_accepts() -> None:
    job = load("rayjob.yaml")
    assert (job["apiVersion"], job["kind"]) == ("ray.io/v1", "RayJob")
    argv = shlex.split(job["spec"]["entrypoint"])
    assert argv[0] == "neuron-signatures"
    args = build_parser().parse_args(argv[1:])  # an unknown flag or bad value: SystemExit 2
    assert args.command == "atlas" and args.engine == "ray" and args.ray_address == "auto"

    cluster = job["spec"]["rayClusterSpec"]
    workers = cluster["workerGroupSpecs"]
    gpus = sum(
        g["replicas"] * int(c["resources"]["limits"].get("nvidia.com/gpu", 0))
        for g in workers
        for c in g["template"]["spec"]["containers"]
    )
    assert gpus > 0 and args.workers == gpus  # one actor (num_gpus=1) per GPU
    assert cluster["headGroupSpec"]["rayStartParams"]["num-cpus"] == "0"

    # Every pod mounts the shared claim at the same path, and the atlas, the model cache and
    # the corpus (when a file) live under it.
    claim = load("pvc.yaml")
    assert claim["kind"] == "PersistentVolumeClaim"
    assert claim["spec"]["accessModes"] == ["ReadWriteMany"]
    pods = [cluster["headGroupSpec"]["template"]["spec"]] + [g["template"]["spec"] for g in workers]
    mounts = set()
    for pod in pods:
        (vol,) = pod["volumes"]
        assert vol["persistentVolumeClaim"]["claimName"] == claim["metadata"]["name"]
        for c in pod["containers"]:
            (m,) = c["volumeMounts"]
            assert m["name"] == vol["name"]
            mounts.add(m["mountPath"])
            env = {e["name"]: e.get("value") for e in c["env"]}
            assert env["HF_HOME"].startswith(m["mountPath"] + "/")
    (mount,) = mounts
    assert str(args.out_dir).startswith(mount + "/")
    assert args.corpus.startswith(("hf:", mount + "/"))


def test_rayjob_pins_the_ray_of_the_extra() -> None:
    """Driver and cluster must run one Ray version (a mismatch is refused)."""
    import tomllib

    pyproject = tomllib.loads((DEPLOY.parents[1] / "pyproject.toml").read_text())
    (extra,) = pyproject["project"]["optional-dependencies"]["ray"]
    version = load("rayjob.yaml")["spec"]["rayClusterSpec"]["rayVersion"]
    low = extra.split(">=")[-1].split("==")[-1].split(",")[0]
    assert version == low, (version, extra)
