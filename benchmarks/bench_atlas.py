"""Atlas throughput against the bare body forward, and peak RSS against corpus size (CPU or GPU).

One process, one model load, the same windows, batches (the atlas's own plan), device and dtype
for every row; the rows are alternated (their order rotating each repetition) and each reports
its best of ``--reps``:

* (a) bare body: plain transformers loaded from the same converted folder, ``model.model(...)``
  with its default attention, no hooks, no logits, every layer: the baseline, 1.00x;
* (b) capture only: ``neuron_signatures.models.capture_hook_post`` on the same batches;
* (c) the atlas's batch loop: ``build_atlas`` with the model already loaded and no write scores,
  timed as its ``forward_s + reduce_s`` (``build.json``); (c') the whole ``build_atlas`` call
  (adds tokenising the corpus, writing windows and the layer files) is reported beside it;
* (d) on a CPU, (c) again with the torch-ops reducer (``NEURON_SIGNATURES_NO_KERNEL=1``, the GPU
  path), to show what the compiled pass saves;
* (c) again without its first batch, against (a) on the same batches: the first batch fills
  every top-k list, reservoir and histogram cell of every neuron (a one-off cost per atlas, the
  same for 10k or 10M tokens) and dominates a short benchmark;
* reduction share = (c - b) / c.

Every row runs with glibc's malloc keeping freed memory (:mod:`neuron_signatures.malloc`), as the
``atlas`` command runs; ``NEURON_SIGNATURES_KEEP_FREED_MEMORY=0`` measures glibc's defaults.

Then the torch-ops reducer's work per layer and batch, counted on the second batch of the plan
(the first fills the lists) with ``neuron_signatures.atlas.sync_count``: aten ops (about the
kernels a GPU launches), host synchronisations (``nonzero``, boolean masks, ``.item()``,
``.cpu()``...) and uploads, for the dense path a GPU runs and the compacting path a CPU without
numba runs. These are counts, not times: they hold on any machine.

Then peak RSS of builds of ``--rss_tokens`` N and 10*N corpus tokens, each in a fresh process
(``--rss_layers``, default layer 0 only, to keep it fast: the forward stops after it).

The reduction's cost per token falls as the lists fill (a token enters a top-k list of n seen
tokens with probability ~k/n), so short corpora overstate it: the default is 30k tokens, the size
of ``make demo``'s atlas.

Instead of the table, ``--pairs N`` runs N rounds of (build, bare body, capture only), each
against its own bare pass, and ``--interleaved N`` runs N builds with the bare body run on each
batch just before the build's forward of it: a batch's two passes are seconds apart, so a VM's
drift over minutes (±5-10% here) falls on both, and one long corpus needs one build.

Usage: ``python benchmarks/bench_atlas.py [--tokens 30000] [--reps 2] [--device cpu]
[--dtype fp32] [--rss_tokens 1000] [--rss_layers 0] [--no_rss] [--sections] [--pairs N]
[--interleaved N]``
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from neuron_signatures import models  # noqa: E402
from neuron_signatures.atlas.build import AtlasConfig, build_atlas  # noqa: E402


def config(out: Path, args: argparse.Namespace, tokens: int, layers: list[int] | None) -> Any:
    return AtlasConfig(
        out_dir=out,
        max_tokens=tokens,
        layers=layers,
        device=args.device,
        model_dtype=args.dtype,
        write_scores_k=0,
        checkpoint_every=10**12,
        progress=False,
        overwrite=True,
    )


def machine(device: str) -> str:
    """The date and the machine a table was measured on: the CPU's model name, its cores and
    whether it multiplies bf16 natively (without, torch emulates bf16 and a bf16 row measures
    the emulation), or the GPU's name."""
    import torch

    if device.startswith("cuda"):
        name = torch.cuda.get_device_name()
    else:
        name = platform.processor() or platform.machine()
        cpuinfo = Path("/proc/cpuinfo")
        lines = cpuinfo.read_text().splitlines() if cpuinfo.is_file() else []
        name = next((x.split(":", 1)[1].strip() for x in lines if x.startswith("model name")), name)
        bf16 = "native bf16" if models.cpu_has_native_bf16() else "no native bf16"
        name = f"{name}, {os.cpu_count()} cores, {bf16}"
    return f"{datetime.date.today()}, {name}"


def sync(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()


def rss_child(args: argparse.Namespace) -> None:
    layers = [int(x) for x in args.rss_layers.split(",")]
    with tempfile.TemporaryDirectory() as d:
        t0 = time.perf_counter()
        build_atlas(config(Path(d) / "a", args, args.rss_child, layers))
        elapsed = time.perf_counter() - t0
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"maxrss_mib": rss, "build_s": elapsed}))


def sections(args: argparse.Namespace, lm: Any, out: Path) -> None:
    """``--sections``: where the CPU reduction's time goes, one more build with timers around
    the parts of ``update_kernel`` (summed over layers; two layers run at once on 2 cores, so the
    sum can exceed the build's wall-clock ``reduce_s``)."""
    import collections

    from neuron_signatures.atlas import kernel, reduce

    spent: collections.Counter[str] = collections.Counter()
    calls: collections.Counter[str] = collections.Counter()

    def timed(mod: Any, name: str, label: str) -> None:
        real = getattr(mod, name)

        def wrapper(*a: Any, **k: Any) -> Any:
            t = time.perf_counter()
            try:
                return real(*a, **k)
            finally:
                spent[label] += time.perf_counter() - t
                calls[label] += 1

        setattr(mod, name, wrapper)

    parts = [
        (kernel, "run", "kernel.run (all of the compiled pass and its setup)"),
        (kernel, "_tiles", "  the compiled pass (_tiles)"),
        (kernel, "add_power_sums", "exact power-sum digits (add_power_sums)"),
        (kernel, "put_windows", "new examples' windows written into the lists (put_windows)"),
        (reduce, "raw_bits", "activations as the raw bits the pass reads (raw_bits)"),
        (reduce, "pivot", "pivots (exact.pivot)"),
    ]
    saved = [(m, n, getattr(m, n)) for m, n, _ in parts]
    try:
        for m, n, label in parts:
            timed(m, n, label)
        build_atlas(config(out, args, args.tokens, None), load=lambda _: lm)
    finally:
        for m, n, real in saved:
            setattr(m, n, real)
    log = json.loads((out / "build.json").read_text())
    print(f"reduction sections, one build ({log['reduce_s']:.2f} s of reduction, wall clock):")
    for _, _, label in parts:
        print(f"  {label:<54} {spent[label]:>7.2f} s  ({calls[label]} calls)")


def sync_rows(lm: Any, inputs: list, batches: list, lengths: Any, manifest: dict) -> None:
    """Ops, host syncs and uploads of the torch-ops reducer per layer and batch (the second)."""
    import numpy as np

    from neuron_signatures.atlas.plan import reduce_params
    from neuron_signatures.atlas.reduce import batch_tokens, new_state, update
    from neuron_signatures.atlas.sync_count import count_syncs
    from neuron_signatures.models import capture_hook_post

    if len(batches) < 2:
        return
    p = reduce_params(manifest)
    layer = manifest["layers"][0]
    seed, bos = p.seed, bool(manifest["params"].get("include_bos", False))
    got = []
    for b in (0, 1):
        wins = np.asarray(batches[b])
        acts = capture_hook_post(lm, *inputs[b], [layer])[layer].cpu()
        got.append((acts, batch_tokens(wins, lengths[wins], p.ctx_len, bos, seed, "cpu")))
    print(f"torch-ops reducer, layer {layer}, batch 2 ({got[1][1].row.numel()} tokens), counted:")
    print(f"{'path':<44} {'ops':>6} {'host syncs':>11} {'uploads':>8}")
    for name, dense in (("dense (any device but a CPU: GPU)", True), ("compacting (CPU)", False)):
        st = new_state(p, "cpu", layer)
        update(st, p, *got[0], dense=dense)
        with count_syncs(host=[st["n"]]) as c:
            update(st, p, *got[1], dense=dense)
        where = ", ".join(f"{k} {v}" for k, v in c.where.most_common())
        print(f"{name:<44} {c.ops:>6} {c.syncs:>11} {c.uploads:>8}  {where}")
    n = len(manifest["layers"])
    print(f"per batch of all {n} layers: multiply by {n} (layers are folded in turn on a GPU)")


def paired_rounds(
    args: argparse.Namespace,
    first: tuple[float, dict[str, Any]],
    bare_pass: Any,
    capture_pass: Any,
    out: Path,
    lm: Any,
    n_fwd: int,
    n_batches: int,
) -> None:
    """``--pairs N``: N rounds of a build (the first is the warm-up's), the bare body and the
    capture, in turn; each round's ratios against its own bare pass (this VM's speed drifts over
    minutes, so a round's rows are minutes apart at most, not a whole table apart). Round 0's
    build is the warm-up's and carries first-use costs (about a second: numba's specialisations
    loaded, first allocations): on a short corpus read the later rounds."""
    print(
        f"{models.EMBEDDED_NAME} on {lm.device}, {args.dtype}, {n_fwd} tokens forwarded, "
        f"{n_batches} batches; rounds of (build, bare, capture); {machine(lm.device)}"
    )
    print(
        f"{'round':>5} {'bare s':>8} {'capture':>8} {'forward':>8} {'reduce':>7} {'1st batch':>9} "
        f"{'whole s':>8} {'loop vs bare':>12} {'whole vs bare':>13} {'share':>6}"
    )
    for r in range(args.pairs):
        if r == 0:
            whole, log = first
        else:
            t = time.perf_counter()
            build_atlas(config(out, args, args.tokens, None), load=lambda _: lm)
            whole, log = time.perf_counter() - t, json.loads((out / "build.json").read_text())
        bare, cap = bare_pass(), capture_pass()
        fwd, red, red1 = float(log["forward_s"]), float(log["reduce_s"]), log["batches_s"][0][2]
        print(
            f"{r:>5} {bare:>8.2f} {cap:>8.2f} {fwd:>8.2f} {red:>7.2f} {red1:>9.2f} "
            f"{whole:>8.2f} {bare / (fwd + red):>11.3f}x {bare / whole:>12.3f}x "
            f"{red / (fwd + red):>6.1%}"
        )


def interleaved_rounds(
    args: argparse.Namespace, bare_batch: Any, out: Path, lm: Any, n_fwd: int, n_batches: int
) -> None:
    """``--interleaved N``: N builds, each with the bare body run on every batch just before the
    build's own forward of it (``build_atlas``'s ``on_batch`` hook runs the bare body on the next
    batch; the first batch's bare pass runs before the call). The bare and the atlas passes of a
    batch are seconds apart, so the VM's drift over minutes falls on both; the loop is the
    build's own ``forward_s + reduce_s`` (``build.json``). The whole call holds the bare passes
    too, so it is not reported here."""
    print(
        f"{models.EMBEDDED_NAME} on {lm.device}, {args.dtype}, {n_fwd} tokens forwarded, "
        f"{n_batches} batches; builds with the bare body run before each batch; "
        f"{machine(lm.device)}"
    )
    print(
        f"{'round':>5} {'bare s':>8} {'forward':>8} {'reduce':>7} {'1st batch':>9} "
        f"{'fwd vs bare':>11} {'loop vs bare':>12} {'w/o 1st':>8} {'share':>6}"
    )
    bare: list[float] = []  # this round's bare body, per batch

    def next_bare(b: int) -> None:
        if b + 1 < n_batches:
            bare.append(bare_batch(b + 1))

    for r in range(args.interleaved):
        bare[:] = [bare_batch(0)]
        build_atlas(config(out, args, args.tokens, None), load=lambda _: lm, on_batch=next_bare)
        log = json.loads((out / "build.json").read_text())
        per = log["batches_s"]
        fwd, red = float(log["forward_s"]), float(log["reduce_s"])
        rest = sum(bare[1:]) / sum(f + x for _, f, x in per[1:]) if n_batches > 1 else 0.0
        print(
            f"{r:>5} {sum(bare):>8.2f} {fwd:>8.2f} {red:>7.2f} {per[0][2]:>9.2f} "
            f"{fwd / sum(bare):>10.3f}x {sum(bare) / (fwd + red):>11.3f}x {rest:>7.3f}x "
            f"{red / (fwd + red):>6.1%}"
        )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tokens", type=int, default=30000, help="corpus tokens of rows (a)-(c)")
    ap.add_argument("--reps", type=int, default=2)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--dtype", default="fp32", help="fp32, bf16 or fp16 (the compute dtype)")
    ap.add_argument("--rss_tokens", type=int, default=1000, help="N of the RSS builds (and 10N)")
    ap.add_argument("--rss_layers", default="0", help="layers of the RSS builds, comma separated")
    ap.add_argument("--no_rss", action="store_true")
    ap.add_argument("--no_torch_ops", action="store_true", help="skip row (d) (CPU only)")
    ap.add_argument("--sections", action="store_true", help="time the CPU reduction's parts")
    ap.add_argument(
        "--pairs",
        type=int,
        default=0,
        help="instead of the table: N rounds of (build, bare body, capture only), each round's "
        "ratios printed (the first build is the warm-up: one build fewer on a long corpus)",
    )
    ap.add_argument(
        "--interleaved",
        type=int,
        default=0,
        help="instead of the table: N builds, each running the bare body on every batch just "
        "before the build's forward of it (drift over minutes cancels)",
    )
    ap.add_argument("--rss_child", type=int, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.rss_child is not None:
        rss_child(args)
        return

    from neuron_signatures.malloc import keep_freed_memory

    kept = keep_freed_memory()  # as the atlas command does (every row runs under it)
    import numpy as np
    import torch
    from transformers import AutoModelForCausalLM

    from neuron_signatures.atlas.plan import window_batches
    from neuron_signatures.atlas.run import batch_inputs
    from neuron_signatures.atlas.store import load_tensors
    from neuron_signatures.models import capture_hook_post

    dt = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[args.dtype]
    tok = models.load_tokenizer(models.EMBEDDED_NAME)
    loads = {}
    t0 = time.perf_counter()
    lm = models.load_model(models.EMBEDDED_NAME, args.device, args.dtype, tokenizer=tok)
    loads["load_model (self-check cached)"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    folder = str(models.embedded_model_dir())
    bare = AutoModelForCausalLM.from_pretrained(folder, dtype=dt).to(lm.device).eval()
    loads["plain from_pretrained (for (a))"] = time.perf_counter() - t0
    dev = lm.device

    tmp = Path(tempfile.mkdtemp(prefix="bench_atlas_"))
    out = tmp / "atlas"
    t0 = time.perf_counter()
    build_atlas(config(out, args, args.tokens, None), load=lambda _: lm)  # warm-up + the plan
    first_build = time.perf_counter() - t0, json.loads((out / "build.json").read_text())
    manifest = json.loads((out / "atlas.json").read_text())
    w = load_tensors(out / "windows.safetensors")
    tokens, lengths = w["tokens"].numpy(), w["length"].numpy()
    budget = manifest["params"]["max_batch_tokens"]
    batches = window_batches(lengths, manifest["params"]["batch_size"], budget)
    assert len(batches) == manifest["params"]["n_batches"]
    pad = tok.pad_token_id if tok.pad_token_id is not None else 0
    inputs = [
        tuple(t.to(dev) for t in batch_inputs(tokens, lengths, np.asarray(b), pad)) for b in batches
    ]
    layers = manifest["layers"]
    n_fwd = int(lengths.sum())

    per_batch: dict[str, list[list[float]]] = {"bare": [], "atlas": []}  # per pass

    def bare_batch(i: int) -> float:
        ids, mask = inputs[i]
        t = time.perf_counter()
        with torch.inference_mode():
            bare.model(input_ids=ids, attention_mask=mask, use_cache=False)
        sync(dev)
        return time.perf_counter() - t

    def bare_pass() -> float:
        times = [bare_batch(i) for i in range(len(inputs))]
        per_batch["bare"].append(times)
        return sum(times)

    def capture_pass() -> float:
        t = time.perf_counter()
        for ids, mask in inputs:
            capture_hook_post(lm, ids, mask, layers)
        sync(dev)
        return time.perf_counter() - t

    if args.interleaved:
        interleaved_rounds(args, bare_batch, out, lm, n_fwd, len(batches))
        return
    if args.pairs:
        paired_rounds(args, first_build, bare_pass, capture_pass, out, lm, n_fwd, len(batches))
        return
    whole: list[float] = []
    reducer: list[str] = []

    def build() -> tuple[float, dict[str, Any]]:
        t = time.perf_counter()
        build_atlas(config(out, args, args.tokens, None), load=lambda _: lm)
        return time.perf_counter() - t, json.loads((out / "build.json").read_text())

    def atlas_pass() -> float:
        s, log = build()
        whole.append(s)
        reducer.append(log["reducer"])
        per_batch["atlas"].append([f + r for _, f, r in log["batches_s"]])
        return float(log["forward_s"] + log["reduce_s"])

    def torch_ops_pass() -> float:
        os.environ["NEURON_SIGNATURES_NO_KERNEL"] = "1"
        try:
            _, log = build()
        finally:
            del os.environ["NEURON_SIGNATURES_NO_KERNEL"]
        return float(log["forward_s"] + log["reduce_s"])

    rows = {"(a) bare body": bare_pass, "(b) capture only": capture_pass}
    rows["(c) atlas batch loop"] = atlas_pass
    if args.device == "cpu" and not args.no_torch_ops:
        rows["(d) (c) with the torch-ops reducer"] = torch_ops_pass
    best = {k: float("inf") for k in rows}
    names = list(rows)
    for rep in range(args.reps):
        for name in names[rep % len(names) :] + names[: rep % len(names)]:
            best[name] = min(best[name], rows[name]())
    print(
        f"{models.EMBEDDED_NAME} on {dev}, {args.dtype}, {n_fwd} tokens forwarded "
        f"({manifest['windows']['n_windows']} windows of <= {manifest['params']['ctx_len']}), "
        f"{len(batches)} batches (<= {budget} tokens), {len(layers)} layers, best of {args.reps}, "
        f"reducer: {reducer[-1]}, malloc keeps freed memory: {kept}; {machine(dev)}"
    )
    base = best["(a) bare body"]
    print(f"{'row':<34} {'seconds':>8} {'tokens/s':>9} {'vs (a)':>7}")
    for name, s in best.items():
        print(f"{name:<34} {s:>8.2f} {n_fwd / s:>9.0f} {base / s:>6.2f}x")
    s, label = min(whole), "(c') whole build_atlas call"
    print(f"{label:<34} {s:>8.2f} {n_fwd / s:>9.0f} {base / s:>6.2f}x")
    if len(batches) > 1:  # the lists fill during the first batch: nearly all its tokens rank
        bare_rest = min(sum(p[1:]) for p in per_batch["bare"])
        atlas_rest = min(sum(p[1:]) for p in per_batch["atlas"])
        label = "(c) without its first batch"
        rest = n_fwd - int(lengths[np.asarray(batches[0])].sum())
        print(
            f"{label:<34} {atlas_rest:>8.2f} {rest / atlas_rest:>9.0f} "
            f"{bare_rest / atlas_rest:>6.2f}x  (vs (a) on the same batches)"
        )
    c, b = best["(c) atlas batch loop"], best["(b) capture only"]
    print(f"reduction share (c - b) / c: {(c - b) / c:.0%}")
    if "(d) (c) with the torch-ops reducer" in best:
        d = best["(d) (c) with the torch-ops reducer"]
        if c > b and d > b:
            print(f"reduction time, torch ops / numba kernel: {(d - b) / (c - b):.1f}x")
        else:
            print("reduction time, torch ops / numba kernel: not measurable (noise > reduction)")
    for name, s in loads.items():
        print(f"load, not in the ratios: {name:<34} {s:>6.1f} s")
    sync_rows(lm, inputs, batches, lengths, manifest)
    if args.sections and args.device == "cpu":
        sections(args, lm, out)

    if args.no_rss:
        return
    print(f"peak RSS, fresh processes, layers {args.rss_layers} only:")
    for n in (args.rss_tokens, 10 * args.rss_tokens):
        cmd = [sys.executable, __file__, "--rss_child", str(n), "--rss_layers", args.rss_layers]
        cmd += ["--device", args.device, "--dtype", args.dtype]
        got = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout)
        print(f"  {n:>8} tokens: {got['maxrss_mib']:8.0f} MiB  (build {got['build_s']:.1f} s)")


if __name__ == "__main__":
    main()
