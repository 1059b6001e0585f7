"""Terminal browser responsiveness: key press to painted screen on generated runs.

Builds three synthetic runs (no model): 1000 prompts, 10 prompts of the same shape, and a
Gemma 2 2B-shaped run (26 layers x 9216 neurons). For each it measures the time to open the run
and paint the first view, then presses every navigation key ``--repeats`` times under Textual's
Pilot and records key-to-paint times (:mod:`neuron_signatures.tui.timing`). It prints one table
per key with the 1000-prompt / 10-prompt ratio: a ratio near 1 means the browser's cost does not
grow with the run, because only the prompt on screen is read.

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/bench_tui.py [--prompts 1000] [--repeats 10]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
from pathlib import Path
from time import perf_counter

import numpy as np

KEYS = {
    "n": "neuron +1",
    "b": "neuron -1",
    "pagedown": "neuron +100",
    "pageup": "neuron -100",
    "right": "layer +1",
    "left": "layer -1",
    "down": "token +1",
    "up": "token -1",
    "right_square_bracket": "next prompt",
    "left_square_bracket": "prev prompt",
    "a": "all/window",
}
BUDGET_MS = 100.0


def make_run(path: Path, n_prompts: int, n_layers: int, d_mlp: int, seed: int = 0) -> Path:
    """A bf16 run of ``n_prompts`` prompts of 8..40 tokens with random activations."""
    from neuron_signatures.store.build import write_run

    rng = np.random.default_rng(seed)
    prompts, acts = [], []
    for i in range(n_prompts):
        seq = int(rng.integers(8, 41))
        tokens = ["<bos>"] + [f"▁w{int(t)}" for t in rng.integers(0, 500, seq - 1)]
        prompts.append(
            {
                "probe_id": f"p{i:05d}",
                "text": "".join(tokens[1:]).replace("▁", " "),
                "token_ids": [2] + [int(t) for t in rng.integers(3, 9000, seq - 1)],
                "tokens": tokens,
            }
        )
        acts.append(rng.standard_normal((n_layers, seq, d_mlp), dtype=np.float32))
    write_run(path, prompts, acts, save_dtype="bf16", prompts_per_shard=64)
    return path


async def measure(run_dir: Path, repeats: int) -> dict[str, object]:
    """Open + first paint (ms) and key-to-paint times (ms) per key."""
    from neuron_signatures.store import open_run
    from neuron_signatures.tui import BrowserState
    from neuron_signatures.tui.timing import TimedBrowserApp, time_keys

    t0 = perf_counter()
    run = open_run(run_dir)
    app = TimedBrowserApp(BrowserState(run, prompt=run.n_prompts // 2))
    opened = {"open_ms": 1e3 * (perf_counter() - t0)}
    times: dict[str, list[float]] = {k: [] for k in KEYS}
    async with app.run_test(size=(140, 42)) as pilot:
        await pilot.pause()
        opened["first_paint_ms"] = 1e3 * (perf_counter() - t0)
        for _ in range(repeats):
            for key in KEYS:
                times[key] += await time_keys(app, pilot, [key])
    return {**opened, "times": times}


def _row(label: str, big: list[float], small: list[float]) -> str:
    b, s = float(np.median(big)), float(np.median(small))
    return (
        f"{label:<14} {b:>8.1f} {np.percentile(big, 90):>8.1f} {max(big):>8.1f} "
        f"{s:>8.1f} {b / s:>7.2f} {b / BUDGET_MS:>8.2f}"
    )


def report(n_big: int, big: dict, small: dict, wide: dict) -> bool:
    """Print the tables; True when the median key-to-paint time is within budget."""
    print(
        f"\nkey press -> painted screen (ms), {n_big}-prompt run vs 10-prompt run, "
        f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs"
    )
    print(
        f"{'key':<14} {'median':>8} {'p90':>8} {'max':>8} {'10p med':>8} {'ratio':>7} "
        f"{'/budget':>8}"
    )
    for key, label in KEYS.items():
        print(_row(label, big["times"][key], small["times"][key]))
    all_big = [t for v in big["times"].values() for t in v]
    all_small = [t for v in small["times"].values() for t in v]
    print(_row("all keys", all_big, all_small))
    all_wide = [t for v in wide["times"].values() for t in v]
    print(f"\n{'run':<24} {'open (ms)':>10} {'first paint (ms)':>17} {'key median (ms)':>16}")
    for name, r in ((f"{n_big} prompts", big), ("10 prompts", small), ("Gemma 2 2B shape", wide)):
        keys = [t for v in r["times"].values() for t in v]
        print(
            f"{name:<24} {r['open_ms']:>10.1f} {r['first_paint_ms']:>17.1f} "
            f"{np.median(keys):>16.1f}"
        )
    ok = float(np.median(all_big)) < BUDGET_MS and float(np.median(all_wide)) < BUDGET_MS
    print(f"\nbudget {BUDGET_MS:.0f} ms per key press: {'OK' if ok else 'OVER'}")
    return ok


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--prompts", type=int, default=1000)
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--d_mlp", type=int, default=2048)
    p.add_argument("--repeats", type=int, default=10)
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        t = perf_counter()
        big = make_run(Path(tmp) / "big", args.prompts, args.layers, args.d_mlp)
        small = make_run(Path(tmp) / "small", 10, args.layers, args.d_mlp)
        wide = make_run(Path(tmp) / "wide", 4, 26, 9216)
        print(f"generated runs in {perf_counter() - t:.1f} s")
        asyncio.run(measure(small, 1))  # warm-up: imports and first-run costs of Textual
        results = [asyncio.run(measure(r, args.repeats)) for r in (big, small, wide)]
    return 0 if report(args.prompts, *results) else 1


if __name__ == "__main__":
    sys.exit(main())
