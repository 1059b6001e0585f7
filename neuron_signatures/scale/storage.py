"""Check that every Ray worker sees the driver's output folder (shared storage) before a build.

Workers write their units and shards into the output folder, and the driver reads them there:
on a cluster that folder must be on storage every node mounts at the same path (NFS, a cluster
file system, a Kubernetes volume). A folder on a node's own disk would let each worker write
parts that the driver never sees. So before any work:

1. The driver writes a probe file ``<folder>/.shared-probe-<token>`` holding the token.
2. Each worker (:func:`answer_probe`, run in the actor) reads it (it must find the token) and
   writes ``<probe>.<worker id>`` beside it.
3. The driver reads every worker's answer file; a worker that did not find the probe, or whose
   answer the driver cannot read, stops the build with one line naming the worker's node and the
   fix (a path every node shares). The probe files are removed either way.
"""

from __future__ import annotations

import os
import socket
import uuid
from pathlib import Path
from typing import Any

from ..errors import NeuronSignaturesError

PROBE = ".shared-probe-"
PROBE_TIMEOUT_S = 120.0


class SharedStorageError(NeuronSignaturesError):
    """A Ray worker cannot see the driver's output folder."""


def answer_probe(folder: str, token: str) -> dict[str, Any]:
    """Worker side: read the driver's probe in ``folder`` and write this worker's answer.

    Returns:
        ``{"worker", "node", "answer"}`` (the answer file's name), with ``"error"`` (what this
        worker saw instead) when the probe is missing or holds another token.
    """
    worker = f"{socket.gethostname()}:{os.getpid()}"
    out: dict[str, Any] = {"worker": worker, "node": node_id(), "answer": None}
    probe = Path(folder) / f"{PROBE}{token}"
    try:
        seen = probe.read_text(encoding="utf-8")
    except OSError as e:
        out["error"] = f"{probe} is not there ({type(e).__name__})"
        return out
    if seen != token:
        out["error"] = f"{probe} holds another build's token"
        return out
    answer = probe.with_name(f"{probe.name}.{uuid.uuid4().hex[:8]}")
    try:
        answer.write_text(worker, encoding="utf-8")
    except OSError as e:
        out["error"] = f"cannot write {answer} ({type(e).__name__}: {e.strerror or e})"
        return out
    out["answer"] = answer.name
    return out


def node_id() -> str | None:
    """The Ray node this process runs on (``None`` outside Ray)."""
    try:
        import ray

        if not ray.is_initialized():  # get_runtime_context() would start (or join) a Ray
            return None
        return str(ray.get_runtime_context().get_node_id())
    except Exception:  # no Ray, or a Ray client: the node is unknown
        return None


def check_shared(
    ray: Any, actors: list[Any], folder: Path, timeout_s: float = PROBE_TIMEOUT_S
) -> None:
    """Driver side: every actor answers the probe in ``folder`` and the driver reads it back.

    Raises:
        SharedStorageError: a worker cannot see the folder (one line: which, and the fix).
    """
    token = uuid.uuid4().hex
    probe = folder / f"{PROBE}{token}"
    probe.write_text(token, encoding="utf-8")
    try:
        answers = ray.get([a.probe_storage.remote(str(folder), token) for a in actors],
                          timeout=timeout_s)  # fmt: skip
        bad = []
        for r in answers:
            if r.get("error") is None and not (folder / str(r["answer"])).is_file():
                r["error"] = f"its answer {r['answer']} did not appear in {folder} here"
            if r.get("error"):
                bad.append(r)
    finally:
        for p in folder.glob(f"{PROBE}{token}*"):
            p.unlink(missing_ok=True)
    if bad:
        first = bad[0]
        node = f" on node {first['node'][:12]}" if first.get("node") else ""
        raise SharedStorageError(
            f"{len(bad)} of {len(actors)} Ray workers cannot share the output folder {folder} "
            f"with this driver (worker {first['worker']}{node}: {first['error']}): put --out_dir "
            "on storage every node mounts at the same path (NFS, a cluster file system, a "
            "Kubernetes volume)"
        )
