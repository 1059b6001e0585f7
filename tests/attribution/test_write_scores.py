"""Write scores: brute-force logit lens on the plain model, chunking, DLA link and the CLI."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from neuron_signatures.attribution.dla import dla
from neuron_signatures.attribution.trace import inv_rms, model_weights, run_trace
from neuron_signatures.attribution.write_scores import vocab_extremes, write_directions
from neuron_signatures.cli import main


def test_write_scores_equal_brute_force_and_link_to_dla(tiny_pair: tuple[Any, Any]) -> None:
    lm, ref = tiny_pair
    neurons = [(0, 5), (2, 63), (1, 0)]
    w = model_weights(lm)
    dirs = write_directions(w, neurons)
    pv, pi, nv, ni = vocab_extremes(w.w_u, dirs, k=7, chunk=10)  # many chunks
    g_f = 1 + ref.model.norm.weight
    for i, (layer, n) in enumerate(neurons):
        blk = ref.model.layers[layer]
        d = blk.mlp.down_proj.weight[:, n] * (1 + blk.post_feedforward_layernorm.weight) * g_f
        full = ref.lm_head.weight @ d
        torch.testing.assert_close(pv[i], full.topk(7).values)
        torch.testing.assert_close(nv[i], full.topk(7, largest=False).values)
        torch.testing.assert_close(full[pi[i]], pv[i])
        torch.testing.assert_close(full[ni[i]], nv[i])
    # DLA = activation x write score x frozen 1/rms of the post-MLP norm and the final norm
    ids, pos, t = [2, 4, 5, 6, 7], 4, 9
    tr = run_trace(lm, ids, pos)
    infl, _ = dla(tr, w, t)
    scores = w.w_u[t].float() @ dirs
    for i, (layer, n) in enumerate(neurons):
        want = (
            tr.acts[layer, pos, n]
            * scores[i]
            * inv_rms(tr.mlp_out[layer, pos], w.eps)
            * inv_rms(tr.final_in[pos], w.eps)
        )
        torch.testing.assert_close(infl[layer, n], want, rtol=1e-4, atol=1e-6)


def test_cli_write_scores(tiny_run: Path, capsys: Any) -> None:
    from neuron_signatures.analysis.results import load_write_scores

    folder = tiny_run / "analysis"
    assert main(["analyze", "--run_dir", str(tiny_run), "--top_k", "4"]) == 0
    assert (
        main(
            [
                "analyze",
                "--mode",
                "write_scores",
                "--from",
                str(folder / "top_neurons.json"),
                "--top_n",
                "3",
                "--topk_write",
                "5",
                "--explicit_tokens",
                "Austin|Austin Texas",
            ]
        )
        == 0
    )
    (path,) = folder.glob("write_scores_top_neurons_top3.json")
    data = json.loads(path.read_text())
    assert data["kind"] == "write_scores" and data["source"] == "top_neurons.json"
    top = json.loads((folder / "top_neurons.json").read_text())["neurons"][:3]
    assert [(r["layer"], r["neuron"]) for r in data["neurons"]] == [
        (r["layer"], r["neuron"]) for r in top
    ]
    ws = load_write_scores(folder, match="top_neurons.json")
    first = ws[(top[0]["layer"], top[0]["neuron"])]
    assert len(first["top_pos"]) == 5 and len(first["top_neg"]) == 5
    pos = [x["score"] for x in first["top_pos"]]
    assert pos == sorted(pos, reverse=True) and pos[0] >= first["top_neg"][0]["score"]
    single, multi = first["explicit"]
    assert single["n_tokens"] == 1 and isinstance(single["score"], float)
    assert multi["n_tokens"] == 2 and multi["score"] is None
    capsys.readouterr()
    assert main(["analyze", "--mode", "write_scores", "--from", str(folder / "nope.json")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_read_neurons_from_influence_csv(tmp_path: Path) -> None:
    import pandas as pd

    from neuron_signatures.attribution.write_scores import read_neurons

    path = tmp_path / "influence_x.csv"
    pd.DataFrame({"rank": [2, 1, 3], "layer": [0, 2, 1], "neuron": [7, 5, 9]}).to_csv(path)
    assert read_neurons(path, 2) == [(2, 5), (0, 7)]
    agg = tmp_path / "neurons_aggregated.csv"
    pd.DataFrame({"layer": [0, 1], "neuron": [1, 2], "mean_peak_abs": [0.5, 3.0]}).to_csv(agg)
    assert read_neurons(agg, 5) == [(1, 2), (0, 1)]
