"""Hand-built runs and analysis files for the web app tests (no model needed), and a small real
atlas of the tiny model.

Neuron (1, 3) has hand-set values so heatmap opacities can be checked by hand; the BOS token of
every prompt holds 50.0 (an attention-sink-like outlier that the default max excludes).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

LAYERS, D_MLP = 2, 8
BOS = 50.0
# neuron (1, 3), per prompt, BOS first: max |v| without BOS is 4 in p0 and 8 in p1 (global 8).
N13 = {
    "seed_prompt": [BOS, 1.0, 2.0, -4.0, 0.0, 0.5],
    "probe_texas": [BOS, 8.0, -1.0, 0.25],
    "probe_xss": [BOS, 0.5, -0.5, 3.0, 0.0],
    "probe_short": [BOS, -2.0],
}
TOKENS = {
    "seed_prompt": ["<bos>", "▁The", "▁capital", "▁of", "▁Texas", "▁is"],
    "probe_texas": ["<bos>", "▁Austin", "▁Texas", "."],
    "probe_xss": ["<bos>", "<script>", "alert(1)", "</script>", '▁&amp;"q"'],
    "probe_short": ["<bos>", "▁hello"],
}
INFLUENCE_NAME = "influence_seed_prompt_dla_logit_pos5_tok100.json"
# (layer, neuron, activation, influence); file order = |influence| descending
INFLUENCE_ROWS = [
    (1, 3, 2.0, 0.5),
    (0, 2, -1.5, -0.3),
    (1, 7, 0.7, 0.2),
    (0, 5, 3.0, -0.1),
    (1, 1, -0.2, 0.05),
]
PEAK_ROWS = [(1, 3), (0, 5), (1, 0)]


def prompts_and_acts() -> tuple[list[dict[str, Any]], list[np.ndarray]]:
    rng = np.random.default_rng(0)
    prompts, acts = [], []
    for i, (pid, toks) in enumerate(TOKENS.items()):
        a = rng.normal(0, 0.5, (LAYERS, len(toks), D_MLP)).astype(np.float32)
        a[:, 0, :] = BOS
        a[1, :, 3] = N13[pid]
        text = "".join(toks[1:]).replace("▁", " ").strip()
        prompts.append(
            {
                "probe_id": pid,
                "text": text,
                "tokens": toks,
                "token_ids": [2] + [100 + 10 * i + j for j in range(1, len(toks))],
            }
        )
        acts.append(a)
    return prompts, acts


def make_run(run_dir: Path, analysis: str = "full") -> Path:
    """Write the run; ``analysis``: ``full`` (peaks, influence, write scores, signatures),
    ``peaks`` (top_neurons.json only) or ``none``."""
    from neuron_signatures.store.build import write_run

    prompts, acts = prompts_and_acts()
    write_run(run_dir, prompts, acts, prompts_per_shard=2)
    if analysis == "none":
        return run_dir
    ad = run_dir / "analysis"
    ad.mkdir(exist_ok=True)
    write_peaks(ad)
    if analysis == "full":
        write_influence(ad)
        write_write_scores(ad)
        write_signatures(ad)
    return run_dir


def write_peaks(ad: Path) -> None:
    rows = [
        {"rank": r + 1, "layer": lay, "neuron": n, "mean_peak_abs": 5.0 - r, "max_peak_abs": 8.0,
         "frac_peak_functional": 0.25, "mode_peak_token_ascii": " Texas",
         "mode_peak_token_count": 2}
        for r, (lay, n) in enumerate(PEAK_ROWS)
    ]  # fmt: skip
    write_json(ad / "top_neurons.json", {"format_version": 1, "kind": "top_neurons",
                                         "selection": {"k": 3}, "neurons": rows})  # fmt: skip


def write_influence(ad: Path) -> None:
    records = [
        {"rank": r + 1, "layer": lay, "neuron": n, "ctx_idx": 5, "activation": a,
         "influence": inf, "token_ascii": " is"}
        for r, (lay, n, a, inf) in enumerate(INFLUENCE_ROWS)
    ]  # fmt: skip
    records[0].update(real_delta=0.48, predicted_delta=0.5)  # the causal check ran
    meta = {"format_version": 1, "kind": "influence", "prompt_id": "seed_prompt", "metric": "dla",
            "target_mode": "logit", "target_pos": 5, "target_token_id": 100,
            "target_token": "▁Austin", "ctx_idx": 5}  # fmt: skip
    write_json(ad / INFLUENCE_NAME, {**meta, "records": records})
    write_json(ad / f"{INFLUENCE_NAME[:-5]}_meta.json", {"kind": "meta"})


def write_write_scores(ad: Path) -> None:
    """One file computed from the influence ranking, and a newer one from the peaks ranking."""
    ws = {
        "top_pos": [{"token": "▁Austin", "token_id": 7, "score": 1.5},
                    {"token": "<b>bold</b>", "token_id": 8, "score": 1.0}],
        "top_neg": [{"token": "▁Paris", "token_id": 9, "score": -0.7}],
        "explicit": [{"token": "▁Austin", "token_ids": [7], "score": 1.5, "n_tokens": 1}],
    }  # fmt: skip
    write_json(ad / "write_scores_influence_seed.json", {
        "format_version": 1, "kind": "write_scores", "source": INFLUENCE_NAME,
        "neurons": [{"layer": 1, "neuron": 3, "write_scores": ws}]})  # fmt: skip
    other = {"top_pos": [{"token": "▁Sacramento", "token_id": 11, "score": 2.0}], "top_neg": []}
    newer = ad / "write_scores_top_neurons.json"
    write_json(newer, {
        "format_version": 1, "kind": "write_scores", "source": "top_neurons.json",
        "neurons": [{"layer": 1, "neuron": 3, "write_scores": other},
                    {"layer": 0, "neuron": 5, "write_scores": other}]})  # fmt: skip
    future = newer.stat().st_mtime + 10  # newest file: a "newest wins" reader would pick it
    os.utime(newer, (future, future))


def write_signatures(ad: Path) -> None:
    sig = {"layer": 1, "neuron": 3, "class": "entity", "name": "Texas detector",
           "reasons": ["peaks on Texas in 2 probes"],
           "per_probe_peaks": {"seed_prompt": -4.0, "probe_texas": 8.0}}  # fmt: skip
    write_json(ad / "signatures_demo.json", {"format_version": 1, "kind": "signatures",
                                             "neurons": [sig]})  # fmt: skip


def write_json(path: Path, obj: dict[str, Any]) -> None:
    path.write_text(json.dumps(obj, ensure_ascii=False), encoding="utf-8")


ATLAS_MARKUP = ("Illinois", "<script>Illinois")  # vocabulary piece shown as markup-like text


def make_atlas(lm: Any, out: Path) -> Path:
    """Build an atlas of ``lm`` (layers 0-2) over 40 lines of the tiny vocabulary's words, then
    rename one vocabulary piece to HTML-like text (display only: the ids do not change)."""
    from tests.atlas.conftest import build, corpus_lines

    corpus = out.parent / "corpus.txt"
    corpus.write_text("\n".join(corpus_lines()) + "\n")
    build(lm, out, corpus)
    vocab = json.loads((out / "vocab.json").read_text(encoding="utf-8"))
    vocab[vocab.index(ATLAS_MARKUP[0])] = ATLAS_MARKUP[1]
    (out / "vocab.json").write_text(json.dumps(vocab), encoding="utf-8")
    return out


# A demo-shaped influence file: `influence --verify_top 20` over a run, 200 records kept (the
# default selection), the causal check on the first 20 only; records 21-200 carry
# ``real_delta: None`` (NaN written as JSON null), the rest of the run's neurons are unranked.
DEMO_LAYERS, DEMO_D_MLP, DEMO_RANKED, DEMO_VERIFIED = 3, 72, 200, 20


def demo_influence_order() -> list[tuple[int, int]]:
    """The ranked neurons of the demo-shaped file, in rank order (a fixed shuffle of the run's)."""
    every = [(lay, n) for lay in range(DEMO_LAYERS) for n in range(DEMO_D_MLP)]
    order = np.random.default_rng(7).permutation(len(every))[:DEMO_RANKED]
    return [every[i] for i in order]


def make_demo_influence_run(run_dir: Path, model_name: str = "synthetic") -> Path:
    """A run of ``DEMO_LAYERS x DEMO_D_MLP`` neurons with a demo-shaped influence file."""
    from neuron_signatures.store.build import write_run

    rng = np.random.default_rng(1)
    prompts, acts = [], []
    for i, (pid, toks) in enumerate(list(TOKENS.items())[:2]):
        a = rng.normal(0, 0.5, (DEMO_LAYERS, len(toks), DEMO_D_MLP)).astype(np.float32)
        ids = [2] + [100 + 10 * i + j for j in range(1, len(toks))]
        prompts.append(
            {"probe_id": pid, "text": " ".join(toks[1:]), "tokens": toks, "token_ids": ids}
        )
        acts.append(a)
    write_run(run_dir, prompts, acts, model_name=model_name, prompts_per_shard=2)
    ad = run_dir / "analysis"
    ad.mkdir(exist_ok=True)
    records = []
    for r, (lay, n) in enumerate(demo_influence_order()):
        verified = r < DEMO_VERIFIED
        records.append(
            {"rank": r + 1, "layer": lay, "neuron": n, "ctx_idx": 5, "activation": 1.0 - r / 400,
             "influence": 0.5 - r / 1000, "token_ascii": " is", "coef": 0.1,
             "real_delta": 0.25 + r / 100 if verified else None,
             "predicted_delta": 0.5 - r / 1000 if verified else None}
        )  # fmt: skip
    meta = {"format_version": 1, "kind": "influence", "prompt_id": "seed_prompt", "metric": "dla",
            "target_mode": "logit", "target_pos": 5, "target_token_id": 100,
            "target_token": "▁Austin", "ctx_idx": 5}  # fmt: skip
    write_json(ad / INFLUENCE_NAME, {**meta, "records": records})
    return run_dir


def demo_causal_line(rank: int) -> str | None:
    """The causal-check text the pages show for the record of ``rank`` (None past the check)."""
    if rank > DEMO_VERIFIED:
        return None
    r = rank - 1
    return f"causal check: real delta {0.25 + r / 100:+.4g} vs predicted {0.5 - r / 1000:+.4g}"
