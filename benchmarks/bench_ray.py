"""The cost of ``atlas --engine ray`` on a real two-node cluster, as ratios measured in one run.

A Ray cluster of two nodes on 127.0.0.1 (``ray start --head`` and a second ``ray start``, one
CPU each, every port on loopback: ``tests/scale/loopback.py``) builds the same atlas (the
embedded Gemma 3 270M, fp32, CPU, the embedded fortune corpus cut to ``--tokens`` tokens, write
scores skipped by default: they are computed once, by one process, in both) as one process on
the same two cores. Both builds run as CLI processes (model loads and imports included) and
must be byte-identical (every file but ``build.json``). Rows, per unit count:

- wall time of the one-process build and of the cluster build, and their ratio (the engine's
  overhead: one model load per worker, unit parts and their merges, Ray's calls);
- CPU seconds of the driver, from ``build.json``: its setup (``driver_setup_cpu_s``: the
  tokenizer load and the corpus plan, the work one process does as well, fixed per build) and
  its Ray part (``driver_ray_cpu_s``: joining Ray, starting the workers, the probe, handing out
  units and merges, finishing), and the whole driver process (with its imports);
- CPU seconds of the workers (``cpu_s`` summed over units and merges, every thread) and the
  share of the driver's Ray part in them, which must stay under 5%: the driver coordinates.

Usage: ``python benchmarks/bench_ray.py [--tokens 6000] [--units 4,8] [--max_batch_tokens 512]
[--write_scores_k 0]``
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.scale.loopback import LoopbackCluster  # noqa: E402


def atlas_bytes(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.name not in ("build.json", ".lock")
    }


def timed(argv: list[str], env: dict[str, str]) -> tuple[float, float]:
    """Run ``argv``; its wall seconds and CPU seconds (user + system, the process alone)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.perf_counter()
    r = subprocess.run(argv, env=env, capture_output=True, text=True, cwd=ROOT)
    wall = time.perf_counter() - t
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if r.returncode != 0:
        raise SystemExit(f"{' '.join(argv[:4])} ... failed: {r.stderr[-2000:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tokens", type=int, default=6000)
    ap.add_argument("--units", default="4,8", help="unit counts to try, one cluster build each")
    ap.add_argument("--max_batch_tokens", type=int, default=512, help="small: several batches")
    ap.add_argument("--write_scores_k", type=int, default=0, help="0: skip the write scores")
    args = ap.parse_args()
    flags = [
        "--max_tokens", str(args.tokens), "--max_batch_tokens", str(args.max_batch_tokens),
        "--write_scores_k", str(args.write_scores_k), "--device", "cpu", "--model_dtype",
        "fp32", "--no_progress",
    ]  # fmt: skip
    cli = [sys.executable, "-m", "neuron_signatures", "atlas"]
    cluster = LoopbackCluster()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        try:
            one = Path(tmp) / "one"
            env_one = cluster.env(OMP_NUM_THREADS="2")  # the two cores the cluster has
            t_one, _ = timed([*cli, "--out_dir", str(one), *flags], env_one)
            n_tok = json.loads((one / "atlas.json").read_text())["progress"]["tokens_forwarded"]
            print(f"one process: {t_one:.1f} s", flush=True)
            t = time.perf_counter()
            cluster.start_head()
            cluster.add_node("b")
            t_start = time.perf_counter() - t
            print(f"cluster start: {t_start:.1f} s", flush=True)
            for units in [int(u) for u in args.units.split(",")]:
                out = Path(tmp) / f"ray{units}"
                ray_flags = ["--engine", "ray", "--ray_address", cluster.address,
                             "--workers", "2", "--units", str(units)]  # fmt: skip
                wall, proc_cpu = timed([*cli, "--out_dir", str(out), *flags, *ray_flags],
                                       cluster.env())  # fmt: skip
                log = json.loads((out / "build.json").read_text())
                rows.append((units, wall, proc_cpu, log, atlas_bytes(one) == atlas_bytes(out)))
                print(f"cluster, {units} units: {wall:.1f} s", flush=True)
        finally:
            cluster.stop()

    print(
        f"\natlas of {n_tok} tokens, embedded Gemma 3 270M, fp32, CPU; {platform.node()}, "
        f"{os.cpu_count()} cores, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}"
    )
    print(f"one process (2 threads): {t_one:.1f} s; two-node cluster start: {t_start:.1f} s")
    head = ("units", "cluster s", "ratio", "driver CPU s: setup / Ray / process",
            "workers CPU s", "driver Ray / workers", "setup / workers", "nodes",
            "identical")  # fmt: skip
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for units, wall, proc_cpu, log, same in rows:
        workers_cpu = sum(w["cpu_s"] for w in log["per_worker"].values())
        setup, ray_part = log["driver_setup_cpu_s"], log["driver_ray_cpu_s"]
        cells = (
            units,
            f"{wall:.1f}",
            f"{wall / t_one:.2f}",
            f"{setup:.1f} / {ray_part:.1f} / {proc_cpu:.1f}",
            f"{workers_cpu:.1f}",
            f"{ray_part / max(workers_cpu, 1e-9):.1%}",
            f"{setup / max(workers_cpu, 1e-9):.1%}",
            len(log["nodes"]),
            same,
        )
        print("| " + " | ".join(map(str, cells)) + " |")
    print("ratio: cluster wall time / one process (both CLI processes, model loads included);")
    print("driver CPU: setup = tokenizer load and corpus plan (fixed per build, done by one")
    print("process too); Ray = joining Ray, starting workers, probe, task loop, finish; process")
    print("= the whole driver process with its imports. Workers CPU: units and merges, every")
    print("thread. On a shared machine the wall times follow the CPU share each process gets.")


if __name__ == "__main__":
    main()
