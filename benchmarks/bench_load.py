"""Model load time against a plain ``from_pretrained`` of the same folder, as ratios in one run.

Rows, in one process (imports and the page cache warm for all), alternated with their order
rotating each repetition; each reports its median and best of ``--reps``:

* (a) plain ``AutoModelForCausalLM.from_pretrained(folder)``, ``.eval()``: the baseline, 1.00x;
* (b) ``load_model`` warm: a pass of the hook self-check is cached (``models.verdict``), so no
  bridge boots and no forward runs;
* (c) ``load_model`` cold: an empty verdict folder, so the self-check boots the TransformerBridge
  and runs its forwards (what every load cost before verdicts were cached, and what the first
  load of a model, a new library version or ``--recheck_model`` costs now);
* (a') and (b') the same as (a) and (b) followed by one forward of a 7-token prompt: the weights
  are mapped lazily, so the first forward pays for reading them; a cold load runs forwards
  already.

The tokenizer is loaded once and passed to ``load_model`` (the commands load it first to check
prompts), so every row loads the weights only.

``--fresh N`` then times whole fresh processes (interpreter, imports, tokenizer and model),
alternated N times: plain transformers, ``load_model`` with the check's pass cached (it never
imports TransformerLens), and ``load_model`` with ``NEURON_SIGNATURES_RECHECK_MODEL=1``.

Usage: ``python benchmarks/bench_load.py [--model gemma3-270m] [--reps 3] [--dtype fp32]
[--fresh 3]``
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from neuron_signatures import models  # noqa: E402
from neuron_signatures.models import verdict  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=models.EMBEDDED_NAME)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--dtype", default="fp32")
    ap.add_argument("--fresh", type=int, default=0, help="fresh-process rows, N alternations")
    args = ap.parse_args()

    import torch
    from transformers import AutoModelForCausalLM
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    spec = models.resolve_model_spec(args.model)
    folder = models.local_folder(spec)
    tok = models.load_tokenizer(args.model)
    probe = torch.tensor([tok("The capital of Texas is")["input_ids"][:7]])
    dt = models.torch_dtype(args.dtype)
    tmp = Path(tempfile.mkdtemp(prefix="bench_load_"))
    warm_dir = tmp / "warm"
    os.environ[verdict.CHECKS_ENV] = str(warm_dir)
    os.environ.pop(verdict.RECHECK_ENV, None)
    models.load_model(args.model, "cpu", args.dtype, tokenizer=tok)  # stores the pass for (b)
    load0 = os.getloadavg()[0]

    def forward(model: Any) -> None:
        with torch.inference_mode():
            model.model(input_ids=probe)

    def plain(first_forward: bool) -> Any:
        m = AutoModelForCausalLM.from_pretrained(folder, dtype=dt).eval()
        if first_forward:
            forward(m)
        return m

    def load(cold: bool, first_forward: bool) -> Any:
        os.environ[verdict.CHECKS_ENV] = str(Path(tempfile.mkdtemp(dir=tmp)) if cold else warm_dir)
        lm = models.load_model(args.model, "cpu", args.dtype, tokenizer=tok)
        assert lm.bridge_booted == cold, "the verdict cache did not behave as this row assumes"
        if first_forward:
            forward(lm.plain_model)
        return lm

    rows = {
        "(a) plain from_pretrained": lambda: plain(False),
        "(b) load_model, cached check (warm)": lambda: load(False, False),
        "(c) load_model, check runs (cold)": lambda: load(True, False),
        "(a') (a) + first forward": lambda: plain(True),
        "(b') (b) + first forward": lambda: load(False, True),
    }
    secs: dict[str, list[float]] = {k: [] for k in rows}
    names = list(rows)
    for rep in range(args.reps):
        for name in names[rep % len(names) :] + names[: rep % len(names)]:
            t0 = time.perf_counter()
            obj = rows[name]()
            secs[name].append(time.perf_counter() - t0)
            del obj
    print(
        f"{args.model} ({folder}), cpu, {args.dtype}, {torch.get_num_threads()} threads, "
        f"{args.reps} alternating reps; load average {load0:.1f} at the start, "
        f"{os.getloadavg()[0]:.1f} at the end"
    )
    print(f"{'row':<38} {'median s':>8} {'vs (a)':>7} {'best s':>7} {'vs (a)':>7}")
    med = {k: statistics.median(v) for k, v in secs.items()}
    best = {k: min(v) for k, v in secs.items()}
    for name in names:
        base = "(a') (a) + first forward" if name.startswith("(b')") else names[0]
        print(
            f"{name:<38} {med[name]:>8.2f} {med[name] / med[base]:>6.2f}x "
            f"{best[name]:>7.2f} {best[name] / best[base]:>6.2f}x"
        )
    print("(b') is compared with (a'); the target is (b) <= 1.5x (a)")
    if args.fresh:
        fresh(args, folder, warm_dir)
    shutil.rmtree(tmp, ignore_errors=True)


_PLAIN = """
import sys, torch
from transformers import AutoModelForCausalLM, AutoTokenizer
AutoTokenizer.from_pretrained(sys.argv[1])
AutoModelForCausalLM.from_pretrained(sys.argv[1], dtype=torch.float32).eval()
"""
_OURS = """
import sys
from neuron_signatures import models
models.load_model(sys.argv[2], "cpu", "fp32")
"""


def fresh(args: argparse.Namespace, folder: str, checks: Path) -> None:
    """Fresh processes, wall clock from start to exit, alternated with their order rotating."""
    import subprocess

    env = {**os.environ, verdict.CHECKS_ENV: str(checks), "HF_HUB_OFFLINE": "1"}
    env.pop(verdict.RECHECK_ENV, None)
    rows = {
        "plain transformers (tokenizer + model)": (_PLAIN, env),
        "load_model, cached check": (_OURS, env),
        "load_model, check runs": (_OURS, {**env, verdict.RECHECK_ENV: "1"}),
    }
    secs: dict[str, list[float]] = {k: [] for k in rows}
    names = list(rows)
    for rep in range(args.fresh):
        for name in names[rep % len(names) :] + names[: rep % len(names)]:
            code, e = rows[name]
            t0 = time.perf_counter()
            cmd = [sys.executable, "-c", code, folder, args.model]
            subprocess.run(cmd, env=e, check=True, capture_output=True, cwd=ROOT)
            secs[name].append(time.perf_counter() - t0)
    base = statistics.median(secs[names[0]])
    print(f"fresh processes, {args.fresh} alternating reps, load average {os.getloadavg()[0]:.1f}")
    print(f"{'process':<38} {'median s':>8} {'vs plain':>9}")
    for name in names:
        m = statistics.median(secs[name])
        print(f"{name:<38} {m:>8.2f} {m / base:>8.2f}x")


if __name__ == "__main__":
    main()
