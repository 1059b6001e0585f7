"""Dump throughput and memory on the embedded model (CPU), as ratios measured in one process.

Workload (issue 10's independent check): ``--prompts`` (240) prompts of 8-88 words, built
deterministically by walking the words of ``docs/probe_prompts_list.json`` cyclically (prompt
``i`` has ``8 + 37·i mod 81`` words and starts where prompt ``i-1`` stopped), one BOS each,
length-sorted batches of ``--batch_size`` (8), fp32 compute, bf16 save.

Rows, all on the same batches in one process: (a)-(d) interleaved batch by batch (their order
rotating), (e) as a whole dump before or after them in turns, so machine noise hits each alike.
Each is reported two ways: its best whole pass of ``--reps``, and "per batch", the sum over
batches of each batch's best time (for (e) the intervals between its shard writes), which a busy
shared machine disturbs far less:

* (a) bare body: plain transformers loaded from the same converted folder, ``model.model(...)``
  with its default attention (sdpa), no hooks, no logits: the baseline, 1.00×;
* (b) the same body with eager attention (what TransformerBridge forces);
* (c) bridge capture (``capture_hook_post_bridge``), nothing written;
* (d) lean capture (``capture_hook_post``, what ``dump`` uses), nothing written;
* (e) ``dump`` end to end with the model already loaded: tokenise, plan, capture, slice, bf16
  cast, safetensors shards, sha256, fsync, manifest;
* (f) load times, not in the ratios: plain ``from_pretrained`` and its first forward (the weights
  are mapped lazily), and ``load_model`` (its hook self-check's pass cached after a model's
  first load, so no bridge boots; ``benchmarks/bench_load.py`` compares the loads in detail);
* the prototype (one prompt at a time, ``run_with_cache``, full logits, one ``torch.save``) on the
  first ``--proto_prompts`` prompts, once.

``--profile`` then times the steps of (e) one by one, serially (tokenise, pad, capture,
slice + bf16 cast into the shard file's image, sha256, write + fsync with O_DIRECT, and the
old ways beside them: cast then ``.to``, write through the page cache). Last, the peak RSS of
dumps of N and 10·N prompts, each in a fresh process.

``--e2e N`` (issue 25's check) instead times two whole fresh processes, alternated N times with
their order rotating, wall clock from start to exit (interpreter, imports and load included):

* bare: ``python bench_dump.py --bare_child PROMPTS``: plain transformers loads the converted
  folder (tokenizer and model, fp32), tokenises the prompts with one BOS, sorts them by length,
  runs ``model.model(...)`` on right-padded batches of ``--batch_size`` with an attention mask,
  and keeps nothing;
* dump: ``python -m neuron_signatures dump`` on the same prompts (fp32 compute, bf16 save,
  ``--batch_size``), every activation written, with the model check's verdict cached (the
  first dump of a model on a machine runs the check once: ``--recheck_model`` to time that).

Usage: ``python benchmarks/bench_dump.py [--prompts 240] [--reps 2] [--profile]`` (about 5 minutes
on a quiet 2-core machine; ``--prompts 80`` for a quick look); ``python benchmarks/bench_dump.py
--e2e 3`` for the fresh-process comparison (about 4 minutes).
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from neuron_signatures.capture import (  # noqa: E402
    DumpConfig,
    _pad_batch,
    dump,
    plan_batches,
    tokenize_prompts,
)
from neuron_signatures.prompts import Prompt, load_prompts  # noqa: E402

PROBES = ROOT / "docs" / "probe_prompts_list.json"


def bench_prompts(n: int, min_words: int = 8, max_words: int = 88) -> list[Prompt]:
    """``n`` prompts of ``min_words..max_words`` words, the same on every machine."""
    words = " ".join(p.text for p in load_prompts(PROBES)).split()
    span = max_words - min_words + 1
    out, start = [], 0
    for i in range(n):
        k = min_words + (37 * i) % span
        out.append(
            Prompt(f"bench_{i:04d}", " ".join(words[(start + j) % len(words)] for j in range(k)))
        )
        start += k
    return out


def timed(fn, *args) -> float:
    t0 = time.perf_counter()
    fn(*args)
    return time.perf_counter() - t0


def run_batches(fn, padded) -> None:
    for ids, mask in padded:
        fn(ids, mask)


def bench_prototype(lm, records: list[dict], out: Path) -> float:
    import torch

    names = lambda n: n.endswith("mlp.hook_post")  # noqa: E731
    kept = {}
    t0 = time.perf_counter()
    with torch.inference_mode():
        for r in records:
            ids = torch.tensor([r["token_ids"]], device=lm.device)
            _, cache = lm.bridge.run_with_cache(ids, names_filter=names)
            kept[r["probe_id"]] = (
                torch.stack(
                    [cache[f"blocks.{layer}.mlp.hook_post"][0] for layer in range(lm.n_layers)]
                )
                .to(torch.bfloat16)
                .cpu()
            )
    torch.save(kept, out / "activations.pt")
    return sum(len(r["token_ids"]) for r in records) / (time.perf_counter() - t0)


def profile_steps(lm, prompts, tok, batch_size: int, out: Path) -> dict[str, float]:
    """Seconds of each step of (e), run serially over all batches (no writer thread)."""
    import torch

    from neuron_signatures import models
    from neuron_signatures.capture import _pack
    from neuron_signatures.store.atomic import atomic_write_chunks, atomic_write_image
    from neuron_signatures.store.shard_image import ShardBuffers

    secs: dict[str, float] = {}

    def add(name: str, t0: float) -> float:
        now = time.perf_counter()
        secs[name] = secs.get(name, 0.0) + now - t0
        return now

    t = time.perf_counter()
    records = tokenize_prompts(tok, prompts, prepend_bos=True, max_seq_len=2048, truncate=False)
    lengths = [len(r["token_ids"]) for r in records]
    batches = plan_batches(lengths, batch_size=batch_size, max_batch_tokens=1 << 30)
    t = add("tokenise + plan", t)
    layers = list(range(lm.n_layers))
    buffers = ShardBuffers()
    for s, batch in enumerate(batches):
        ids, mask = _pad_batch(batch, records, lengths, tok.pad_token_id)
        t = add("pad", t)
        got = models.capture_hook_post(lm, ids, mask, layers)
        t = add("lean capture (d)", t)
        parts = {
            layer: [got[layer][r, : lengths[i]] for r, i in enumerate(batch)] for layer in layers
        }
        for layer in layers:
            torch.cat(parts[layer]).to(torch.bfloat16).contiguous()
        t = add("slice + bf16 cast, before (cat, then .to)", t)
        shape = [sum(lengths[i] for i in batch), lm.d_mlp]
        image = buffers.image({f"layer_{layer}": (torch.bfloat16, shape) for layer in layers})
        for layer in layers:
            _pack(parts[layer], torch.bfloat16, image.tensors[f"layer_{layer}"])
        t = add("slice + bf16 cast into the file's image (now)", t)
        hashlib.sha256(image.data()).hexdigest()
        hashed = time.perf_counter() - t
        t = add("sha256", t)
        # both writers hash too: count only the rest as writing
        atomic_write_chunks(out / f"before_{s:05d}.safetensors", [image.data()])
        secs["write + fsync through the page cache, before"] = (
            secs.get("write + fsync through the page cache, before", 0.0)
            + time.perf_counter()
            - t
            - hashed
        )
        t = time.perf_counter()
        atomic_write_image(out / f"shard_{s:05d}.safetensors", image)
        t = add("write + fsync, O_DIRECT (now)", t)
        secs["write + fsync, O_DIRECT (now)"] -= hashed
    return secs


def bare_child(prompts_json: str, batch_size: int) -> None:
    """The bare process of ``--e2e``: plain transformers, the same folder, prompts and batches."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from neuron_signatures.models import embedded_model_dir

    folder = str(embedded_model_dir())
    tok = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
    texts = [p["text"] for p in json.loads(Path(prompts_json).read_text())]
    ids = [[tok.bos_token_id, *tok(t, add_special_tokens=False).input_ids] for t in texts]
    ids.sort(key=len)
    pad = tok.pad_token_id if tok.pad_token_id is not None else 0
    with torch.inference_mode():
        for start in range(0, len(ids), batch_size):
            rows = ids[start : start + batch_size]
            width = max(map(len, rows))
            x = torch.tensor([r + [pad] * (width - len(r)) for r in rows])
            mask = torch.tensor([[1] * len(r) + [0] * (width - len(r)) for r in rows])
            model.model(input_ids=x, attention_mask=mask, use_cache=False)


def fresh_processes(args: argparse.Namespace) -> None:
    """``--e2e``: the bare process against the ``dump`` command, fresh processes, alternated."""
    from neuron_signatures import models

    models.load_model("gemma3-270m", "cpu", "fp32")  # the verdict is cached, as for any user
    prompts = bench_prompts(args.prompts)
    with tempfile.TemporaryDirectory() as tmp:
        pj = Path(tmp) / "prompts.json"
        pj.write_text(json.dumps([{"id": p.id, "text": p.text} for p in prompts]))
        cmds = {
            "bare process (plain transformers)": [
                sys.executable, __file__, "--bare_child", str(pj),
                "--batch_size", str(args.batch_size),
            ],
            "dump command (every activation written)": [
                sys.executable, "-m", "neuron_signatures", "dump", "--prompts_json", str(pj),
                "--out_dir", str(Path(tmp) / "run"), "--model_name", "gemma3-270m",
                "--device", "cpu", "--model_dtype", "fp32", "--save_dtype", "bf16",
                "--batch_size", str(args.batch_size), "--no_progress", "--overwrite",
            ],
        }  # fmt: skip
        names = list(cmds)
        secs: dict[str, list[float]] = {n: [] for n in names}
        cpu: dict[str, list[float]] = {n: [] for n in names}  # user + sys: less load-sensitive
        loads = [os.getloadavg()[0]]
        for rep in range(args.e2e):
            for name in names[rep % 2 :] + names[: rep % 2]:
                r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
                t0 = time.perf_counter()
                subprocess.run(cmds[name], check=True, capture_output=True, cwd=ROOT)
                secs[name].append(time.perf_counter() - t0)
                r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
                cpu[name].append(r1.ru_utime + r1.ru_stime - r0.ru_utime - r0.ru_stime)
            loads.append(os.getloadavg()[0])
            done = ", ".join(f"{secs[n][-1]:.1f} s" for n in names)
            print(f"  rep {rep + 1}/{args.e2e}: {done}", flush=True)
    bare, dumped = (secs[n] for n in names)
    per_rep = [b / d for b, d in zip(bare, dumped, strict=True)]
    print(
        f"\nEnd to end, fresh processes: {len(prompts)} prompts, batch {args.batch_size}, fp32, "
        f"bf16 save, cpu, {args.e2e} alternating reps, load average "
        f"{min(loads):.1f}-{max(loads):.1f}"
    )
    print(f"{'what':<42} {'best s':>7} {'median s':>9} {'median CPU s':>13}")
    for name in names:
        m, c = statistics.median(secs[name]), statistics.median(cpu[name])
        print(f"{name:<42} {min(secs[name]):>7.1f} {m:>9.1f} {c:>13.1f}")
    cpu_ratio = statistics.median(cpu[names[0]]) / statistics.median(cpu[names[1]])
    print(f"dump / bare, CPU seconds (user + sys, medians): {cpu_ratio:.2f}x")
    print(
        f"dump / bare speed: best {min(bare) / min(dumped):.2f}x, median of the per-rep ratios "
        f"{statistics.median(per_rep):.2f}x (per rep: {', '.join(f'{r:.2f}' for r in per_rep)})"
    )


def rss_child(n_prompts: int) -> None:
    prompts = bench_prompts(n_prompts, 8, 16)
    with tempfile.TemporaryDirectory() as d:
        dump(
            DumpConfig(
                prompts=prompts,
                out_dir=Path(d) / "run",
                model_dtype="fp32",
                batch_size=8,
                progress=False,
                device="cpu",
            )
        )
    print(json.dumps({"maxrss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--prompts", type=int, default=240, help="prompts of 8-88 words")
    ap.add_argument("--batch_size", type=int, default=8)
    ap.add_argument("--reps", type=int, default=2, help="alternating repetitions; best is kept")
    ap.add_argument("--proto_prompts", type=int, default=8, help="prototype row size (0: skip)")
    ap.add_argument("--profile", action="store_true", help="time the steps of (e) one by one")
    ap.add_argument("--rss_prompts", type=int, default=32, help="RSS check size (0: skip)")
    ap.add_argument("--e2e", type=int, default=0, help="fresh-process comparison, N reps")
    ap.add_argument("--rss_child", type=int, default=0, help=argparse.SUPPRESS)
    ap.add_argument("--bare_child", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.rss_child:
        rss_child(args.rss_child)
        return
    if args.bare_child:
        bare_child(args.bare_child, args.batch_size)
        return
    if args.e2e:
        fresh_processes(args)
        return
    import torch
    from transformers import AutoModelForCausalLM

    from neuron_signatures import models

    load0 = os.getloadavg()[0]  # other processes' load makes the numbers noisy: say so
    folder = str(models.embedded_model_dir())
    tok = models.load_tokenizer("gemma3-270m")
    prompts = bench_prompts(args.prompts)
    records = tokenize_prompts(tok, prompts, prepend_bos=True, max_seq_len=2048, truncate=False)
    lengths = [len(r["token_ids"]) for r in records]
    batches = plan_batches(lengths, batch_size=args.batch_size, max_batch_tokens=1 << 30)
    padded = [_pad_batch(b, records, lengths, tok.pad_token_id) for b in batches]
    n_tok = sum(lengths)
    padding = sum(ids.numel() for ids, _ in padded) / n_tok - 1

    # The eager twin loads first so both timed loads find the imports and page cache warm.
    eager = AutoModelForCausalLM.from_pretrained(
        folder, dtype=torch.float32, attn_implementation="eager"
    ).eval()
    loads: dict[str, float] = {}
    # from_pretrained maps the weights lazily: count the first forward, on a prompt as short as
    # the self-check's (load_model runs none once the check's pass is cached: bench_load.py).
    t0 = time.perf_counter()
    bare = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
    with torch.inference_mode():
        bare.model(input_ids=torch.tensor([records[0]["token_ids"][:7]]))
    loads["(f) load: plain from_pretrained + a first forward"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    lm = models.load_model("gemma3-270m", "cpu", "fp32", tokenizer=tok)
    loads["(f) load: load_model (self-check cached, for (c)-(e))"] = time.perf_counter() - t0
    layers = list(range(lm.n_layers))

    def body(model):
        def fn(ids, mask):
            with torch.inference_mode():
                model.model(input_ids=ids, attention_mask=mask)

        return fn

    def dump_once(d: Path) -> list[float]:
        """Seconds to each shard's write (the writer's on_batch), then to the end: per batch."""
        cfg = DumpConfig(
            prompts=prompts,
            out_dir=d,
            model_dtype="fp32",
            save_dtype="bf16",
            batch_size=args.batch_size,
            device="cpu",
            progress=False,
            overwrite=True,
        )
        marks = [time.perf_counter()]
        dump(cfg, load=lambda _t: lm, on_batch=lambda _s: marks.append(time.perf_counter()))
        marks.append(time.perf_counter())
        return [b - a for a, b in itertools.pairwise(marks)]

    forwards = {
        "(a) bare body, default (sdpa) attention": body(bare),
        "(b) bare body, eager attention": body(eager),
        "(c) bridge capture, no writes": lambda i, m: models.capture_hook_post_bridge(
            lm, i, m, layers
        ),
        "(d) lean capture, no writes": lambda i, m: models.capture_hook_post(lm, i, m, layers),
    }
    end_to_end = "(e) dump end to end (bf16, sha256, fsync)"
    rows = [*forwards, end_to_end]

    def interleaved(rep: int) -> dict[str, list[float]]:
        """(a)-(d) batch by batch, in an order that rotates with the batch and the rep."""
        secs: dict[str, list[float]] = {n: [] for n in forwards}
        names = list(forwards)
        for k, (ids, mask) in enumerate(padded):
            turn = (rep + k) % len(names)
            for n in names[turn:] + names[:turn]:
                secs[n].append(timed(forwards[n], ids, mask))
        return secs

    best: dict[str, float] = {}  # best whole pass, seconds
    per_batch: dict[str, list[float]] = {}  # best of each batch, seconds
    with tempfile.TemporaryDirectory() as tmp:
        run_dir = Path(tmp) / "run"
        for fn in forwards.values():  # warm-up
            fn(*padded[0])
        for rep in range(args.reps):
            # (a)-(d) interleaved batch by batch, and (e) as a whole dump, in turns.
            got: dict[str, list[float]] = {}
            for step in (0, 1) if rep % 2 == 0 else (1, 0):
                got.update(interleaved(rep) if step == 0 else {end_to_end: dump_once(run_dir)})
            for name, secs in got.items():
                best[name] = min(best.get(name, float("inf")), sum(secs))
                old = per_batch.get(name, secs)
                per_batch[name] = [min(x, y) for x, y in zip(old, secs, strict=True)]
            done = ", ".join(f"{n_tok / best[n]:.0f}" for n in rows)
            print(f"  rep {rep + 1}/{args.reps}, best tok/s so far: {done}", flush=True)
        proto = 0.0
        if args.proto_prompts:
            proto = bench_prototype(lm, records[: args.proto_prompts], Path(tmp))
        steps = profile_steps(lm, prompts, tok, args.batch_size, Path(tmp)) if args.profile else {}

    ref, ref_b = best[rows[0]], sum(per_batch[rows[0]])
    print(
        f"\nDump throughput: {len(prompts)} prompts, {n_tok} tokens ({padding:.0%} padding), "
        f"{len(batches)} batches of {args.batch_size}, fp32 compute, bf16 save, cpu "
        f"({torch.get_num_threads()} threads), best of {args.reps} alternating passes; "
        f"per batch: the sum of each batch's best; load average {load0:.1f} at the start, "
        f"{os.getloadavg()[0]:.1f} at the end"
    )
    print(f"{'what':<56} {'tok/s':>6} {'vs (a)':>7} {'per batch':>10} {'vs (a)':>7}")
    for name in rows:
        r = f"{n_tok / best[name]:>6.0f} {ref / best[name]:>6.2f}x"
        pb = sum(per_batch[name])
        print(f"{name:<56} {r} {n_tok / pb:>10.0f} {ref_b / pb:>6.2f}x")
    if proto:
        name = f"prototype ({args.proto_prompts} prompts, run_with_cache, logits)"
        print(f"{name:<56} {proto:>6.0f} {proto * ref / n_tok:>6.2f}x")
    for name, s in loads.items():
        print(f"{name:<56} {s:>5.1f}s")
    load_bare, load_lm = loads.values()
    e = best[end_to_end]
    print(
        f"With the load (what a `dump` command costs): bare {n_tok / (ref + load_bare):.0f} "
        f"tok/s, dump {n_tok / (e + load_lm):.0f} tok/s, {(ref + load_bare) / (e + load_lm):.2f}x"
    )
    if steps:
        total = sum(v for k, v in steps.items() if "before" not in k)
        print(f"\nSteps of (e), serial (no writer thread), {total:.1f} s in all:")
        for name, s in steps.items():
            print(f"  {name:<50} {s:>6.2f} s  {s / total:>6.1%}")
    if args.rss_prompts:
        rss = {}
        for n in (args.rss_prompts, 10 * args.rss_prompts):
            res = subprocess.run(
                [sys.executable, __file__, "--rss_child", str(n)],
                capture_output=True,
                text=True,
                check=True,
            )
            rss[n] = json.loads(res.stdout.strip().splitlines()[-1])["maxrss_mib"]
        n1, n10 = args.rss_prompts, 10 * args.rss_prompts
        print(
            f"\nPeak RSS of a dump (fresh process, 8-16 word prompts): {n1} prompts "
            f"{rss[n1]:.0f} MiB, {n10} prompts {rss[n10]:.0f} MiB, ratio {rss[n10] / rss[n1]:.2f}x"
        )


if __name__ == "__main__":
    main()
