"""Web app: how long a neuron switch takes to render on a generated 1000-prompt run.

A synthetic run (random activations, no model) with a peaks ranking and an influence file is
written once; then the real Streamlit script runs under ``AppTest`` and the "Next" button is pressed
repeatedly in influence mode, each press showing a neuron never read before (cold column reads from
every shard, all panels rebuilt). The target is under 1 s per switch. A breakdown times the library
parts directly.

    python benchmarks/bench_web.py [--n_prompts 1000] [--run_dir DIR] [--switches 10]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

TARGET_S = 1.0


def make_run(run_dir: Path, n_prompts: int, n_layers: int, d_mlp: int) -> None:
    """Random prompts of 8..48 tokens (BOS first) and random bf16 activations."""
    from neuron_signatures.store.build import write_run

    rng = np.random.default_rng(0)
    words = [f"\u2581w{i}" for i in range(500)]
    prompts, acts = [], []
    for i in range(n_prompts):
        n = int(rng.integers(8, 49))
        toks = ["<bos>", *rng.choice(words, n - 1).tolist()]
        ids = [2, *rng.integers(10, 500, n - 1).tolist()]
        prompts.append(
            {"probe_id": f"p{i:04d}", "text": " ".join(toks[1:]), "tokens": toks, "token_ids": ids}
        )
        a = rng.normal(0, 1, (n_layers, n, d_mlp)).astype(np.float32)
        a[:, 0] = 30.0
        acts.append(a)
    write_run(run_dir, prompts, acts, save_dtype="bf16", prompts_per_shard=32)
    write_analysis(run_dir / "analysis", n_layers, d_mlp, rng)


def write_analysis(ad: Path, n_layers: int, d_mlp: int, rng: np.random.Generator) -> None:
    """An influence file of 2000 records (sorted by |influence|) and a 200-row peaks ranking."""
    ad.mkdir(exist_ok=True)
    inf = rng.normal(0, 1, 2000)
    order = np.argsort(-np.abs(inf))
    records = [{"rank": r + 1, "layer": int(rng.integers(0, n_layers)), "neuron": int(i) % d_mlp,
                "ctx_idx": 5, "activation": float(rng.normal()), "influence": float(inf[i]),
                "token_ascii": " w"} for r, i in enumerate(order)]  # fmt: skip
    (ad / "influence_p0000_dla_logit_pos5_tok10.json").write_text(json.dumps(
        {"format_version": 1, "kind": "influence", "prompt_id": "p0000", "metric": "dla",
         "target_mode": "logit", "records": records}))  # fmt: skip
    peaks = [
        {"rank": r + 1, "layer": 0, "neuron": r % d_mlp, "mean_peak_abs": 1.0} for r in range(200)
    ]
    (ad / "top_neurons.json").write_text(
        json.dumps({"format_version": 1, "kind": "top_neurons", "neurons": peaks})
    )


def timed(fn: Callable[[], object], repeat: int = 5) -> float:
    """Median wall time of ``fn`` in seconds."""
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def app_switches(run_dir: Path, switches: int, limit: int | None) -> tuple[float, list[float]]:
    """First page load, then ``switches`` presses of Next (each a new neuron), in seconds."""
    from streamlit import config
    from streamlit.testing.v1 import AppTest

    from neuron_signatures.web import APP_SCRIPT

    # As `neuron-signatures app` serves it: on localhost, where any run folder opens (with no
    # address, the page would only open folders under the current one).
    config.set_option("server.address", "localhost")
    at = AppTest.from_file(str(APP_SCRIPT), default_timeout=120)
    at.query_params["run_dir"] = str(run_dir)
    t = time.perf_counter()
    at.run()
    first = time.perf_counter() - t
    if at.error:
        raise RuntimeError(at.error[0].value)
    if limit is not None:
        at.number_input(key="hm_limit").set_value(limit).run()
    times = []
    for _ in range(switches):
        t = time.perf_counter()
        at.button(key="nav_Next").click().run()
        times.append(time.perf_counter() - t)
        if at.exception:
            raise RuntimeError(at.exception[0].value)
    return first, times


def breakdown(run_dir: Path) -> list[tuple[str, float]]:
    """The library parts of one switch, timed directly (no Streamlit)."""
    from neuron_signatures.web.heatmap import (
        HeatmapConfig,
        PromptHeat,
        prompt_scales,
        render_stacked_html,
    )
    from neuron_signatures.web.runview import load_view

    view = load_view(run_dir)
    cfg = HeatmapConfig()
    neurons = iter(range(view.run.d_mlp - 1, 0, -1))  # a new column each time: cold reads
    cold = timed(lambda: view.run.neuron(0, next(neurons)))
    flat = view.neuron_flat(0, 7)
    scales = prompt_scales(flat, view.starts, view.lengths, view.bos_mask)

    def stacked(n: int) -> str:
        heats = [
            PromptHeat(
                p.probe_id, p.tokens, p.token_ids, flat[view.prompt_slice(i)], float(scales[i])
            )
            for i, p in enumerate(view.run.prompts[:n])
        ]
        return render_stacked_html(heats, cfg)

    return [
        ("read one neuron over all prompts (a column not read yet)", cold),
        (
            "scales + per-prompt peaks",
            timed(
                lambda: (
                    prompt_scales(flat, view.starts, view.lengths, view.bos_mask),
                    view.peaks(flat),
                )
            ),
        ),
        ("stacked heatmap HTML, 50 prompts", timed(lambda: stacked(50))),
        (
            f"stacked heatmap HTML, all {view.run.n_prompts} prompts",
            timed(lambda: stacked(view.run.n_prompts)),
        ),
    ]


def report(run_dir: Path, rows: list[tuple[str, float]]) -> None:
    """Print the table of timings under a line describing the run."""
    from neuron_signatures.store import open_run

    run = open_run(run_dir)
    print(
        f"\n{run.n_prompts} prompts, {run.n_tokens} tokens, {len(run.layers)} layers x "
        f"{run.d_mlp} neurons ({run.save_dtype}, {len(run.manifest['shards'])} shards)\n"
    )
    print(f"{'what':<60} {'seconds':>8}")
    print("-" * 69)
    for name, sec in rows:
        print(f"{name:<60} {sec:>8.3f}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n_prompts", type=int, default=1000)
    p.add_argument("--n_layers", type=int, default=2)
    p.add_argument("--d_mlp", type=int, default=2048)
    p.add_argument("--switches", type=int, default=10)
    p.add_argument("--run_dir", type=Path, default=None, help="reuse or create a run here")
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        run_dir = args.run_dir or Path(tmp) / "bench_run"
        if not (run_dir / "manifest.json").is_file():
            t = time.perf_counter()
            make_run(run_dir, args.n_prompts, args.n_layers, args.d_mlp)
            print(f"generated {run_dir} in {time.perf_counter() - t:.1f} s")
        rows = breakdown(run_dir)
        first, times = app_switches(run_dir, args.switches, None)
        n_all = json.loads((run_dir / "manifest.json").read_text())["n_prompts"]
        _, times_all = app_switches(run_dir, max(3, args.switches // 3), n_all)
        med = statistics.median(times)
        rows += [
            ("app: first page load (open run, read analysis)", first),
            ("app: neuron switch, 50 prompts shown (median)", med),
            ("app: neuron switch, 50 prompts shown (max)", max(times)),
            (f"app: neuron switch, all {n_all} prompts shown (median)",
             statistics.median(times_all)),
        ]  # fmt: skip
        report(run_dir, rows)
    ok = med < TARGET_S
    print(f"\nneuron switch {'PASS' if ok else 'FAIL'}: median {med:.3f} s (target < {TARGET_S} s)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
