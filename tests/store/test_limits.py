"""Resource bounds of the store: open files of a reader, memory of the ``activations.pt`` export.

Each check runs in a fresh process so its limit (``ulimit -n``) or its measurement (anonymous
memory) concerns only the code under test.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np

from neuron_signatures.store.build import write_run
from neuron_signatures.store.reader import MAX_OPEN_SHARDS

ROOT = Path(__file__).resolve().parents[2]


def run_child(code: str) -> str:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


def many_shards(folder: Path, n_prompts: int, dtype: str) -> Path:
    rng = np.random.default_rng(0)
    prompts = [
        {"probe_id": f"p{i}", "text": "t", "token_ids": [2, 5, 6], "tokens": ["<bos>", "a", "b"]}
        for i in range(n_prompts)
    ]
    acts = [rng.standard_normal((2, 3, 8)).astype(np.float32) for _ in prompts]
    write_run(folder, prompts, acts, save_dtype=dtype, prompts_per_shard=1)
    return folder


def test_reader_opens_shards_lazily_under_a_low_ulimit(tmp_path: Path) -> None:
    """A run with far more shards than ``ulimit -n`` allows files reads whole (fp32 slices are
    views of the memory map, the case most likely to keep files open)."""
    n = 300
    for dtype in ("fp32", "bf16"):
        many_shards(tmp_path / dtype, n, dtype)
    out = run_child(
        f"""
        import os, resource
        import numpy as np
        from neuron_signatures.store import open_run

        in_use = len(os.listdir("/proc/self/fd"))
        limit = in_use + {MAX_OPEN_SHARDS} + 16
        hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
        resource.setrlimit(resource.RLIMIT_NOFILE, (limit, hard))
        for dtype in ("fp32", "bf16"):
            run = open_run({str(tmp_path)!r} + "/" + dtype)
            assert len(run.manifest["shards"]) == {n} > limit
            total = sum(float(run.prompt_acts(p.index).sum()) for p in run.prompts)
            layer = [run.prompt_layer(p.index, 1) for p in run.prompts]
            col = run.neuron(1, 3)
            blocks = sum(b.acts(0).shape[0] for b in run.iter_blocks())
            assert len(col) == len(layer) == {n} and blocks == 3 * {n}
            print(dtype, len(os.listdir("/proc/self/fd")) - in_use)
        """
    )
    for line in out.splitlines():
        assert int(line.split()[1]) <= MAX_OPEN_SHARDS + 2, out


def test_pt_export_memory_is_one_prompt(tmp_path: Path) -> None:
    """``--save_format pt`` writes prompt by prompt: the anonymous memory it adds stays near one
    prompt, not the run (the old export held the run three times over)."""
    rng = np.random.default_rng(0)
    n_prompts, shape = 24, (2, 128, 2048)  # 2 MiB per prompt in fp32, 48 MiB in all
    prompts = [
        {"probe_id": f"p{i}", "text": "t", "token_ids": list(range(128)), "tokens": ["w"] * 128}
        for i in range(n_prompts)
    ]
    acts = [rng.standard_normal(shape).astype(np.float32) for _ in prompts]
    write_run(tmp_path / "run", prompts, acts, save_dtype="fp32", prompts_per_shard=4)
    del acts
    run_bytes = n_prompts * int(np.prod(shape)) * 4
    out = run_child(
        f"""
        import threading, time
        import torch
        from neuron_signatures.store import open_run
        from neuron_signatures.store.legacy import export_legacy_pt

        def anon():
            for line in open("/proc/self/status"):
                if line.startswith("RssAnon:"):
                    return int(line.split()[1]) * 1024

        peak, done = [0], threading.Event()

        def sample():
            while not done.is_set():
                peak[0] = max(peak[0], anon())
                time.sleep(0.002)

        run = open_run({str(tmp_path / "run")!r})
        base = anon()
        t = threading.Thread(target=sample)
        t.start()
        export_legacy_pt(run, "fp32")
        done.set()
        t.join()
        grew = max(peak[0], anon()) - base
        pt = {str(tmp_path / "run" / "activations.pt")!r}
        loaded = torch.load(pt, weights_only=True, mmap=True)
        for p in run.prompts:
            assert torch.equal(loaded[p.probe_id], torch.from_numpy(run.prompt_acts(p.index)))
        print(grew)
        """
    )
    grew = int(out.split()[-1])
    assert grew < run_bytes / 3, f"export added {grew / 2**20:.1f} MiB to a 48 MiB run"
