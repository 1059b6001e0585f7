"""A driver process for the ``cluster`` tests: ``python tests/scale/cluster_driver.py ARGS``.

Builds the tiny atlas on a running cluster with :func:`build_atlas_ray` (as the CLI does), with a
worker hook the CLI has no flag for: ``--hold_on NODE[,NODE]`` makes the worker on each such
node (its ``NS_TEST_NODE``) write ``<marker>.<node>`` and sleep in its first unit, so that the
test can take the node away while it holds a unit; ``--slow S`` sleeps S seconds after every
batch, so that the test can kill this driver mid-build. Run as a script, the hooks travel to the
workers by value.
Prints the build's ``build.json`` on success (one line, ``BUILD {...}``); a domain error is one
line on stderr, exit 2.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path


def hold(nodes: str, marker: str, slow: float):  # type: ignore[no-untyped-def]
    def on_batch(b: int) -> None:
        node = os.environ.get("NS_TEST_NODE", "")
        mark = Path(f"{marker}.{node}")
        if node in nodes.split(",") and not mark.exists():
            mark.write_text(str(os.getpid()))
            time.sleep(600)  # the test takes this node away meanwhile
        if slow:
            time.sleep(slow)

    return on_batch


def main() -> int:
    from neuron_signatures.errors import NeuronSignaturesError
    from neuron_signatures.scale.ray_atlas import RayOptions, build_atlas_ray
    from tests.atlas.conftest import config

    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--model", required=True)
    ap.add_argument("--corpus", required=True)
    ap.add_argument("--address", required=True)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--units", type=int, default=4)
    ap.add_argument("--resume", action="store_true")
    ap.add_argument("--hold_on", default="")
    ap.add_argument("--marker", default="")
    ap.add_argument("--slow", type=float, default=0.0)
    ap.add_argument("--max_retries", type=int, default=3)
    ap.add_argument("--lost_timeout_s", type=float, default=300.0)
    a = ap.parse_args()
    cfg = config(Path(a.out), a.corpus, model_name=a.model, resume=a.resume)
    opts = RayOptions(
        address=a.address, workers=a.workers, units=a.units, max_retries=a.max_retries,
        resume_command="RESUME", lost_timeout_s=a.lost_timeout_s,
    )  # fmt: skip
    hook = hold(a.hold_on, a.marker, a.slow) if (a.hold_on or a.slow) else None
    try:
        out = build_atlas_ray(cfg, opts, on_batch=hook)
    except NeuronSignaturesError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    build = json.loads((out / "build.json").read_text())
    print(f"BUILD {json.dumps(build)}")  # one line: Ray may print its own notices around it
    return 0


if __name__ == "__main__":
    sys.exit(main())
