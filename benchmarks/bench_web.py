"""Web app: how long a neuron switch takes to render, on a generated run and a generated atlas.

Run page: a synthetic run (random activations, no model) with a peaks ranking and an influence file
is written once; then the real Streamlit script runs under ``AppTest`` and the "Next" button is
pressed repeatedly in influence mode, each press showing a neuron never read before (cold column
reads from every shard, all panels rebuilt). The target is under 1 s per switch. A breakdown times
the library parts directly.

Atlas page: a synthetic atlas in the real store format (numpy, no model) of Gemma 2 2B's shape
(26 layers x 9216 neurons, top-k 20, ctx 64, 100 bins x 5 samples, write scores of every layer)
and one of Gemma 3 270M's (18 x 2048), each with only ``--atlas_files`` full layer files written
(a neuron read opens one layer file; the manifest lists every layer). Timed: ``open_atlas(A)
.neuron(l, n)`` on neurons not read before, and the atlas page under ``AppTest`` for a neuron
switch (Next, and the go-to box jumping across layer files). The target is under 300 ms.

    python benchmarks/bench_web.py [--n_prompts 1000] [--run_dir DIR] [--switches 10]
    python benchmarks/bench_web.py --part atlas [--atlas_files 4] [--atlas_dir DIR]
"""

from __future__ import annotations

import argparse
import json
import os
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


# -- atlas page ----------------------------------------------------------------------------------
ATLAS_TARGET_S = 0.3
SHAPES = {"gemma-2-2b": (26, 9216), "gemma-3-270m": (18, 2048)}


def fixed_digits(v: np.ndarray) -> np.ndarray:
    """``[d, 4]`` int64 base-2^32 digits of ``trunc(v * 2^64)`` (numpy twin of atlas.exact)."""
    sign, rest = np.sign(v), np.abs(v) * 2.0**64
    out = []
    for w in (96, 64, 32):
        q = np.floor(rest / 2.0**w)
        out.append(q)
        rest = rest - q * 2.0**w
    out.append(np.floor(rest))
    return (np.stack(out, 1) * sign[:, None]).astype(np.int64)


def templates(rng: np.random.Generator, n: int, count: int = 16) -> dict[str, np.ndarray]:
    """``count`` activation distributions (GELU of a shifted normal, varied scales) summarised
    as the atlas stores them, scaled to ``n`` tokens (neurons share them: generation is fast)."""
    from neuron_signatures.atlas import bins

    nb = bins.n_bins()
    hist = np.zeros((count, nb), np.int64)
    stats = np.zeros((count, 6))  # min, max, mean, mean of squares, frac > 0, frac > 0.1
    for t in range(count):
        z = rng.normal(rng.uniform(-2, 0), 1, 50_000)
        x = (0.5 * z * (1 + np.tanh(0.8 * z)) * rng.uniform(0.2, 4)).astype(np.float32)
        c = np.bincount(bins.bin_of(x), minlength=nb) * (n / x.size)
        hist[t] = np.floor(c).astype(np.int64)
        hist[t, np.argmax(c)] += n - hist[t].sum()  # counts sum to n exactly
        x64 = x.astype(np.float64)
        moments = [x64.mean(), (x64 * x64).mean(), (x > 0).mean(), (x > 0.1).mean()]
        stats[t] = [x.min(), x.max(), *moments]
    return {"hist": hist, "stats": stats}


def layer_tensors(
    rng: np.random.Generator, tpl: dict[str, np.ndarray], d: int, k: int, ctx: int, n_win: int,
    r: int = 5,
) -> dict[str, np.ndarray]:  # fmt: skip
    """One layer file's tensors for ``d`` neurons: the names, shapes and dtypes of
    ``reduce.to_disk``."""
    from neuron_signatures.atlas import bins

    t = rng.integers(0, len(tpl["hist"]), d)
    hist, st = tpl["hist"][t], tpl["stats"][t]
    n = int(hist[0].sum())
    out: dict[str, np.ndarray] = {"n": np.array([n], np.int64), "hist": hist}
    out["min"], out["max"] = st[:, 0].astype(np.float32), st[:, 1].astype(np.float32)
    out["sum"], out["sumsq"] = fixed_digits(st[:, 2] * n), fixed_digits(st[:, 3] * n)
    out["n_pos"] = np.round(st[:, 4] * n).astype(np.int64)
    out["n_thr"] = np.round(st[:, 5] * n).astype(np.int64)
    for side, end, step in (("top", st[:, 1], -0.01), ("bot", st[:, 0], 0.01)):
        val = (end[:, None] * (1 + step * np.arange(k))).astype(np.float32)
        pos = rng.integers(1, ctx, (d, k))
        g = rng.integers(0, n_win, (d, k)) * ctx + pos
        acts = (rng.standard_normal((d, k, ctx), dtype=np.float32) * 0.5).astype(np.float16)
        np.put_along_axis(acts, pos[..., None], val[..., None].astype(np.float16), axis=2)
        out[f"{side}_val"], out[f"{side}_g"], out[f"{side}_acts"] = val, g, acts
    have = hist[..., None] > np.arange(r)  # [d, bins, r]: a sample where the bin has tokens
    out["samp_g"] = np.where(have, rng.integers(0, n_win * ctx, have.shape), -1)
    e = np.asarray(bins.edges(), np.float32)
    mid = np.concatenate([[e[0] * 1.5], (e[1:] + e[:-1]) / 2, [e[-1] * 1.5]]).astype(np.float32)
    out["samp_v"] = np.where(have, mid[None, :, None], 0).astype(np.float32)
    return out


def make_atlas(
    root: Path, shape: tuple[int, int], files: list[int], k: int = 20, ctx: int = 64,
    n_win: int = 16_384, vocab: int = 256_000, write_k: int = 10,
) -> None:  # fmt: skip
    """Write a synthetic atlas of ``shape = (n_layers, d_mlp)`` with full layer files for the
    layers ``files`` only (the manifest lists all layers) and write scores of every layer."""
    from safetensors.numpy import save_file

    from neuron_signatures.atlas import bins, store

    n_layers, d = shape
    rng = np.random.default_rng(0)
    (root / store.LAYERS).mkdir(parents=True, exist_ok=True)
    tokens = rng.integers(3, vocab, (n_win, ctx), dtype=np.int32)
    tokens[:, 0] = 2
    save_file({"tokens": tokens, "length": np.full(n_win, ctx, np.int32),
               "doc": np.arange(n_win, dtype=np.int64), "offset": np.zeros(n_win, np.int64)},
              str(root / store.WINDOWS))  # fmt: skip
    topics = ["art", "science", "work", "food"]
    (root / store.DOCUMENTS).write_text(
        "".join(json.dumps({"topic": topics[i % 4]}) + "\n" for i in range(n_win))
    )
    pieces = ["<pad>", "<eos>", "<bos>", "<unk>"] + [f"\u2581w{i}" for i in range(4, vocab)]
    (root / store.VOCAB).write_text(json.dumps(pieces))
    tpl = templates(rng, n_win * (ctx - 1))
    for layer in files:
        save_file(layer_tensors(rng, tpl, d, k, ctx, n_win), str(store.layer_file(root, layer)))
    ws = {}
    for layer in range(n_layers):
        for side, sgn in (("pos", 1), ("neg", -1)):
            val = sgn * rng.random((d, write_k), dtype=np.float32)
            ws[f"layer_{layer:03d}.{side}_val"] = val
            ws[f"layer_{layer:03d}.{side}_id"] = rng.integers(3, vocab, (d, write_k))
    save_file(ws, str(root / store.WRITE_SCORES))
    manifest = {
        "format": store.FORMAT, "format_version": store.FORMAT_VERSION, "complete": True,
        "model": {"name": f"synthetic {n_layers}x{d}", "n_layers": n_layers, "d_mlp": d},
        "layers": list(range(n_layers)),
        "params": {"ctx_len": ctx, "top_k": k, "interval_samples": 5, "density_threshold": 0.1,
                   "seed": 0, "include_bos": False, "write_scores_k": write_k},
        "statistics": {"histogram": {"edges": bins.edges(), "n_bins": bins.n_bins()}},
        "progress": {"tokens_seen": n_win * (ctx - 1)},
    }  # fmt: skip
    store.write_json(root / store.MANIFEST, manifest)


def evict(root: Path) -> None:
    """Drop the atlas's files from the OS page cache (fsync, then ``POSIX_FADV_DONTNEED``; only
    these files, no root needed), so the next read comes from the disk."""
    for f in root.rglob("*.safetensors"):
        fd = os.open(f, os.O_RDONLY)
        try:
            os.fsync(fd)
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


def atlas_reads(root: Path, files: list[int], n: int = 10) -> dict[str, float]:
    """Seconds of ``open_atlas`` + the first neuron, and the median read of a neuron not read
    before: with the files in the page cache (warm) and evicted before each read (cold)."""
    from neuron_signatures.atlas import open_atlas

    t = time.perf_counter()
    atlas = open_atlas(root)
    atlas.neuron(files[0], 0)  # loads the vocabulary and document list once
    out = {"first": time.perf_counter() - t}
    for kind, step in (("warm", 7919), ("cold", 6151)):
        times = []
        for i in range(n):
            layer, index = files[i % len(files)], (step * (i + 1)) % atlas.d_mlp
            if kind == "cold":
                evict(root)
            t = time.perf_counter()
            atlas.neuron(layer, index)
            times.append(time.perf_counter() - t)
        out[kind] = statistics.median(times)
    return out


def atlas_page_switches(root: Path, files: list[int], n: int = 8) -> dict[str, list[float]]:
    """The atlas page under AppTest: first load, Next presses, go-to jumps across layer files."""
    from streamlit import config
    from streamlit.testing.v1 import AppTest

    from neuron_signatures.web import APP_SCRIPT

    config.set_option("server.address", "localhost")
    at = AppTest.from_file(str(APP_SCRIPT), default_timeout=120)
    at.query_params.update(atlas=str(root), layer=str(files[0]), neuron="100")
    out: dict[str, list[float]] = {"first": [], "next": [], "goto": [], "cold": []}

    def timed_run(kind: str, action: Callable[[], object]) -> None:
        t = time.perf_counter()
        action()
        out[kind].append(time.perf_counter() - t)
        if at.exception or at.error:
            raise RuntimeError((at.exception or at.error)[0].value)

    timed_run("first", at.run)
    for _ in range(n):
        timed_run("next", lambda: at.button(key="atlas_next").click().run())
    d = int(at.number_input(key="atlas_neuron").max)
    for i in range(n):
        target = f"L{files[(i + 1) % len(files)]}/N{(4099 * (i + 3)) % (d + 1)}"
        timed_run("goto", lambda t=target: at.text_input(key="atlas_goto").input(t).run())
    for _ in range(n):
        evict(root)
        timed_run("cold", lambda: at.button(key="atlas_next").click().run())
    return out


def atlas_bench(base: Path, n_files: int) -> bool:
    """Generate both atlases, time them, print the table; True when the 2B switch meets the
    target."""
    meds: dict[str, tuple[float, ...]] = {}
    for name, shape in SHAPES.items():
        files = sorted({round(i * (shape[0] - 1) / max(1, n_files - 1)) for i in range(n_files)})
        root = base / name
        if not (root / "atlas.json").is_file():
            t = time.perf_counter()
            make_atlas(root, shape, files)
            print(f"generated {root} in {time.perf_counter() - t:.1f} s")
        size = sum(f.stat().st_size for f in root.rglob("*") if f.is_file()) / 2**20
        reads = atlas_reads(root, files)
        page = atlas_page_switches(root, files)
        switches = (statistics.median(page[k]) for k in ("next", "goto", "cold"))
        meds[name] = (reads["warm"], reads["cold"], *switches)
        print(f"\n{name}: {shape[0]} layers x {shape[1]} neurons, top-k 20, ctx 64; layer files "
              f"written: {len(files)} of {shape[0]} ({files}), {size:.0f} MiB on disk; warm: in "
              "the page cache, cold: evicted from it before each read")  # fmt: skip
        rows = [
            ("open_atlas + first neuron (vocab, documents)", reads["first"]),
            ("open_atlas(A).neuron(l, n), new neuron, warm (median)", reads["warm"]),
            ("open_atlas(A).neuron(l, n), new neuron, cold (median)", reads["cold"]),
            ("app: first atlas page load", page["first"][0]),
            ("app: neuron switch, Next, warm (median)", meds[name][2]),
            ("app: neuron switch, Next, warm (max)", max(page["next"])),
            ("app: neuron switch, go-to across layers, warm (median)", meds[name][3]),
            ("app: neuron switch, Next, cold (median)", meds[name][4]),
        ]
        print(f"{'what':<56} {'ms':>8} {'/ 300 ms':>9}")
        print("-" * 75)
        for what, sec in rows:
            print(f"{what:<56} {sec * 1e3:>8.1f} {sec / ATLAS_TARGET_S:>9.2f}")
    big, small = meds["gemma-2-2b"], meds["gemma-3-270m"]
    names = ("read warm", "read cold", "switch warm", "go-to warm", "switch cold")
    ratios = ", ".join(f"{n} {b / a:.2f}x" for n, b, a in zip(names, big, small, strict=True))
    print(f"\n2B / 270M ratio: {ratios}")
    worst = max(big[2:])
    ok = worst < ATLAS_TARGET_S
    print(f"atlas neuron switch {'PASS' if ok else 'FAIL'}: worst median {worst * 1e3:.0f} ms "
          f"(target < {ATLAS_TARGET_S * 1e3:.0f} ms)")  # fmt: skip
    return ok


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--part", choices=("run", "atlas", "both"), default="both")
    p.add_argument("--n_prompts", type=int, default=1000)
    p.add_argument("--n_layers", type=int, default=2)
    p.add_argument("--d_mlp", type=int, default=2048)
    p.add_argument("--switches", type=int, default=10)
    p.add_argument("--run_dir", type=Path, default=None, help="reuse or create a run here")
    p.add_argument("--atlas_files", type=int, default=4, help="layer files written per atlas")
    p.add_argument("--atlas_dir", type=Path, default=None, help="reuse or create atlases here")
    args = p.parse_args(argv)
    ok = True
    with tempfile.TemporaryDirectory() as tmp:
        if args.part in ("run", "both"):
            ok &= run_bench(args, Path(tmp))
        if args.part in ("atlas", "both"):
            ok &= atlas_bench(args.atlas_dir or Path(tmp) / "atlases", args.atlas_files)
    return 0 if ok else 1


def run_bench(args: argparse.Namespace, tmp: Path) -> bool:
    """The run page: generate (or reuse) the run, time it, print the table."""
    run_dir = args.run_dir or tmp / "bench_run"
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
    return ok


if __name__ == "__main__":
    sys.exit(main())
