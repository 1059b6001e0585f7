"""The LLM explain path against a stand-in OpenAI server: is the run bound by the server, and
does a rerun send nothing? Ratios measured in one run.

1. Load the atlas's model (not timed), run the score-time forward over the random windows of
   one layer and keep its first ``--neurons`` neurons.
2. Start the loopback stand-in server (``tests/explain/fake_openai.py``: a deterministic
   explainer, simulator and classifier) in its own process on 127.0.0.1 with a fixed latency
   per request (``--delay_ms``, 20 by default) and as many threads as requests in flight.
3. **Explain run**: :meth:`neuron_signatures.explain.llm_run.LLMExplainer.explain_layer` on
   those neurons with ``--concurrency`` requests in flight (every scorer: simulation,
   detection, fuzzing), a fresh response cache; requests/s = requests sent / wall time.
   Done twice: with the response cache as it is (SQLite, commits in batches) and with the
   older cache (one fsync'd file per answer), to show what the cache costs.
4. **Server alone**: the same request bodies (read back from the cache) replayed by a plain
   ``httpx`` client on ``--concurrency`` threads, nothing else done: requests/s.
5. **Rerun**: the explain run again on the filled cache: hit rate (must be 100%) and requests
   sent (must be 0).

Usage: ``python benchmarks/bench_explain_llm.py --atlas A [--layer 5] [--neurons 64]
[--delay_ms 20] [--concurrency 8] [--n_random_tokens 1024]``
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import date
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import httpx  # noqa: E402
import numpy as np  # noqa: E402

from neuron_signatures.atlas import load_atlas_model, open_atlas  # noqa: E402
from neuron_signatures.explain.forward import (  # noqa: E402
    RandomTokens,
    pick_random_windows,
    score_time_forward,
)
from neuron_signatures.explain.llm_run import CACHE, LLMExplainer, LLMSettings  # noqa: E402
from neuron_signatures.explain.response_cache import ResponseCache  # noqa: E402
from neuron_signatures.explain.split import LayerArrays, read_layer, read_windows  # noqa: E402
from neuron_signatures.store.atomic import atomic_write_bytes  # noqa: E402


class FileCache(ResponseCache):
    """The older response cache: one JSON file per answer, written atomically (fsync each)."""

    def put(self, key: str, endpoint: str, body: dict[str, Any], response: dict[str, Any]) -> None:
        entry = {"endpoint": endpoint, "body": body, "response": response}
        path = self.folder / key[:2] / f"{key}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(path, json.dumps(entry, sort_keys=True).encode())


def first_neurons(arr: LayerArrays, n: int) -> LayerArrays:
    d = arr.d
    cut = {
        f.name: getattr(arr, f.name)[:n]
        for f in dataclasses.fields(arr)
        if isinstance(getattr(arr, f.name), np.ndarray) and getattr(arr, f.name).shape[:1] == (d,)
    }
    return dataclasses.replace(arr, **cut)


def start_server(delay_s: float) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.explain.fake_openai", str(delay_s)],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    return proc, proc.stdout.readline().strip()


def explain_once(
    settings: LLMSettings, root: Path, inputs: tuple[Any, ...], legacy: bool = False
) -> dict[str, float]:
    expl = LLMExplainer(settings, root)
    if legacy:
        assert expl.client.cache is not None
        expl.client.cache.close()
        expl.client.cache = FileCache(root / CACHE)
    try:
        sent0 = expl.client.stats.sent  # the probes
        t = time.perf_counter()
        expl.explain_layer(*inputs)
        expl.client.flush()
        dt = time.perf_counter() - t
        st = expl.client.stats
        return {"s": dt, "sent": st.sent - sent0, "hit_rate": st.hit_rate, "rps": 0.0}
    finally:
        expl.close()


def replay(url: str, bodies: list[tuple[str, dict[str, Any]]], concurrency: int) -> float:
    """Requests/s of a plain client sending ``bodies`` with ``concurrency`` in flight."""
    with httpx.Client(limits=httpx.Limits(max_connections=concurrency), timeout=60) as http:

        def one(item: tuple[str, dict[str, Any]]) -> None:
            http.post(f"{url}/{item[0]}", json=item[1]).raise_for_status()

        t = time.perf_counter()
        with ThreadPoolExecutor(concurrency) as pool:
            list(pool.map(one, bodies))
        return len(bodies) / (time.perf_counter() - t)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--atlas", required=True)
    ap.add_argument("--layer", type=int, default=None, help="default: the atlas's first layer")
    ap.add_argument("--neurons", type=int, default=64)
    ap.add_argument("--delay_ms", type=float, default=20.0)
    ap.add_argument("--concurrency", type=int, default=8)
    ap.add_argument("--n_random_tokens", type=int, default=1024)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()

    atlas = open_atlas(args.atlas)
    layer = atlas.layers[0] if args.layer is None else args.layer
    win = read_windows(atlas)
    wins = pick_random_windows(win.lengths - win.start, args.n_random_tokens, 0)
    lm = load_atlas_model(atlas, device=args.device)
    rnd = score_time_forward(lm, win, wins, [layer], 16)
    del lm
    arr = first_neurons(read_layer(atlas, layer), args.neurons)
    rnd = RandomTokens(rnd.wins, rnd.g, rnd.token, {layer: rnd.layer_acts(layer)[:, : arr.d]})
    inputs = (arr, win, rnd, atlas.vocab, 0)

    proc, url = start_server(args.delay_ms / 1000)
    settings = LLMSettings(base_url=url, model="stand-in", concurrency=args.concurrency)
    try:
        with tempfile.TemporaryDirectory() as a, tempfile.TemporaryDirectory() as b:
            run = explain_once(settings, Path(a), inputs)
            old = explain_once(settings, Path(b), inputs, legacy=True)
            cache = ResponseCache(Path(a) / CACHE)
            bodies = [(e, body) for e, body in cache.entries() if not e.startswith("probe:")]
            cache.close()
            alone = replay(url, bodies, args.concurrency)
            again = explain_once(settings, Path(a), inputs)
    finally:
        assert proc.stdin is not None
        proc.stdin.close()
        proc.wait(timeout=30)

    bound = args.concurrency / (args.delay_ms / 1000)
    print(
        f"# LLM explain path, {date.today()}, {platform.machine()} {os.cpu_count()} cores, "
        f"atlas {atlas.model_name} L{layer}, {arr.d} neurons, stand-in server "
        f"{args.delay_ms:g} ms/request, concurrency {args.concurrency} "
        f"(latency bound {bound:.0f} req/s), {len(bodies)} requests per run"
    )
    print("| what | requests/s | ratio to the server alone |")
    print("|---|---|---|")
    print(f"| server alone (plain client, same bodies) | {alone:.0f} | 1.00 |")
    for name, r in (("explain run, batched cache", run), ("explain run, file per answer", old)):
        rps = r["sent"] / r["s"]
        print(f"| {name} | {rps:.0f} | {rps / alone:.2f} |")
    print(
        f"\nrerun: hit rate {again['hit_rate']:.0%}, {again['sent']:.0f} requests sent, "
        f"{again['s']:.2f} s"
    )
    assert again["sent"] == 0 and again["hit_rate"] == 1.0


if __name__ == "__main__":
    main()
