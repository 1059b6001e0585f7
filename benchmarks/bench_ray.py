"""Engine overhead of ``atlas --engine ray`` on one machine, as ratios measured in one run.

The same atlas (the embedded Gemma 3 270M, fp32, CPU, the embedded fortune corpus cut to
``--tokens`` tokens) is built once in this process and once on a local Ray with ``--workers``
CPU workers (write scores skipped by default: computed once, by one process, in both, they took
minutes on 2 cores and hide the engine's cost); the two must be byte-identical (every file but
``build.json``). Rows: wall time of each, the Ray start, the units' time in the workers, the
driver's merges, and the ratios.
On a 2-core machine two workers share the cores that one process uses, so the ratio is the
engine's cost (Ray start, one model load per worker, unit parts and their merge), not a speed-up.

Usage: ``python benchmarks/bench_ray.py [--tokens 4000] [--workers 2] [--units 2,8]
[--max_batch_tokens 512] [--write_scores_k 0]``
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

from neuron_signatures.atlas.build import AtlasConfig, build_atlas  # noqa: E402
from neuron_signatures.scale.cluster import start_local_ray  # noqa: E402
from neuron_signatures.scale.ray_atlas import RayOptions, build_atlas_ray  # noqa: E402


def atlas_bytes(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.name not in ("build.json", ".lock")
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tokens", type=int, default=4000)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--units", default="2,8", help="unit counts to try, one Ray build each")
    ap.add_argument("--max_batch_tokens", type=int, default=512, help="small: several batches")
    ap.add_argument(
        "--write_scores_k", type=int, default=0, help="0: skip the write scores (same cost in both)"
    )
    args = ap.parse_args()
    import ray

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        common = dict(
            max_tokens=args.tokens,
            max_batch_tokens=args.max_batch_tokens,
            write_scores_k=args.write_scores_k,
            device="cpu",
            model_dtype="fp32",
            progress=False,
        )
        t = time.perf_counter()
        one = build_atlas(AtlasConfig(out_dir=Path(tmp) / "one", **common))  # type: ignore[arg-type]
        t_one = time.perf_counter() - t
        n_tok = json.loads((one / "atlas.json").read_text())["progress"]["tokens_forwarded"]
        print(f"one process: {t_one:.1f} s", flush=True)

        t = time.perf_counter()
        start_local_ray(ray, num_cpus=args.workers)  # as the product does: 127.0.0.1 only
        t_start = time.perf_counter() - t
        for units in [int(u) for u in args.units.split(",")]:
            t = time.perf_counter()
            cfg = AtlasConfig(out_dir=Path(tmp) / f"ray{units}", **common)  # type: ignore[arg-type]
            out = build_atlas_ray(cfg, RayOptions(workers=args.workers, units=units))
            t_ray = time.perf_counter() - t
            log = json.loads((out / "build.json").read_text())
            rows.append((units, t_ray, log, atlas_bytes(one) == atlas_bytes(out)))
            print(f"Ray, {units} units: {t_ray:.1f} s", flush=True)
        ray.shutdown()

    print(f"\natlas of {n_tok} tokens, embedded Gemma 3 270M, fp32, CPU ({os.cpu_count()} cores)")
    print(f"one process (model load included): {t_one:.1f} s, {n_tok / t_one:.0f} tok/s")
    print(f"Ray start (local, {args.workers} CPUs): {t_start:.1f} s")
    head = ("workers", "units", "Ray s", "ratio", "+start", "units s", "merges s", "identical")
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for units, t_ray, log, same in rows:
        unit_s = sum(w["seconds"] for w in log["per_worker"].values())
        cells = (
            args.workers,
            units,
            f"{t_ray:.1f}",
            f"{t_ray / t_one:.2f}",
            f"{(t_ray + t_start) / t_one:.2f}",
            f"{unit_s:.1f}",
            f"{sum(w['merge_s'] for w in log['per_worker'].values()):.1f}",
            same,
        )
        print("| " + " | ".join(map(str, cells)) + " |")
    print("ratio: Ray wall time / one process (both include their model loads); +start: with the")
    print("Ray start; units s: the units' time summed over workers; merges s: the merges' time")
    print("summed over workers (they run there, in parallel with units).")


if __name__ == "__main__":
    main()
