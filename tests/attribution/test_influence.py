"""Influence: act×grad against plain autograd, the causal check against a direct intervention,
the CLI and every bad input's one-line error."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from neuron_signatures.analysis.selection import make_selection
from neuron_signatures.attribution.actgrad import act_grad, objective_fn, objective_of_rows
from neuron_signatures.attribution.influence import InfluenceConfig, run_influence
from neuron_signatures.attribution.trace import run_trace
from neuron_signatures.cli import main
from neuron_signatures.store import open_run
from neuron_signatures.store.build import write_run

IDS = [2, 4, 5, 6, 7, 8, 9, 10]


def gated_forward(ref: Any, ids: list[int], gates: dict[int, tuple[torch.Tensor, Any]]) -> Any:
    """Run the plain model with each down projection's input multiplied by a gate tensor, or
    overwritten at given (position, neuron) entries; returns the logits [seq, vocab]."""
    hs = []
    for layer, (gate, setter) in gates.items():

        def pre(m: Any, args: tuple, gate: torch.Tensor = gate, setter: Any = setter) -> tuple:
            x = args[0] * gate if gate is not None else args[0].clone()
            if setter is not None:
                setter(x)
            return (x,)

        hs.append(ref.model.layers[layer].mlp.down_proj.register_forward_pre_hook(pre))
    try:
        return ref(torch.tensor([ids])).logits[0]
    finally:
        for h in hs:
            h.remove()


@pytest.mark.parametrize(
    ("objective", "ctx"), [("logit", 7), ("logprob", 4), ("logit_diff", None), ("logit", None)]
)
def test_act_grad_equals_autograd_on_plain_model(
    tiny_pair: tuple[Any, Any], objective: str, ctx: int | None
) -> None:
    lm, ref = tiny_pair
    pos, target, base = 7, 13, 21
    tr = run_trace(lm, IDS, pos, objective_fn(objective, lambda row: target, base))
    infl, _grad_sum, ctx_pos = act_grad(tr, ctx)
    # Independent: d objective / d gate with a = x * gate at gate = 1 is exactly a * grad.
    gates = {i: (torch.ones(1, len(IDS), lm.d_mlp, requires_grad=True), None) for i in range(3)}
    with torch.enable_grad():
        logits = gated_forward(ref, IDS, gates)
        obj = objective_of_rows(logits[pos], objective, target, base)
        grads = torch.autograd.grad(obj, [g for g, _ in gates.values()])
    want = torch.stack([g[0] for g in grads])  # [L, seq, d_mlp]
    want = want[:, ctx] if ctx is not None else want.sum(1)
    torch.testing.assert_close(infl, want, rtol=1e-4, atol=1e-6)
    assert abs(tr.objective - float(obj.detach())) < 1e-5
    if ctx is None:
        assert int(ctx_pos.max()) <= pos


@pytest.mark.parametrize(
    ("metric", "ablation", "ctx"),
    [("act_grad", "zero", None), ("act_grad", "mean", "all"), ("dla", "zero", None)],
)
def test_verify_real_delta_equals_direct_intervention(
    tiny_pair: tuple[Any, Any],
    tiny_run: Path,
    tmp_path: Path,
    metric: str,
    ablation: str,
    ctx: str | None,
) -> None:
    lm, ref = tiny_pair
    cfg = InfluenceConfig(
        run_dir=tiny_run,
        prompt_id="probe_1_Austin",
        metric=metric,
        verify_top=6,
        ablation=ablation,
        ctx_idx=ctx,
        out_dir=tmp_path,
        selection=make_selection(10, None),
    )
    (res,) = run_influence(cfg, lm=lm)
    run = open_run(tiny_run)
    ids = run.prompt("probe_1_Austin").token_ids
    pos, tid = res.target.pos, res.target.token_id
    if ablation == "mean":  # mean over the run's non-BOS tokens, computed here from the store
        rows = [run.prompt_acts(p.index)[:, 1:] for p in run.prompts]
        means = np.concatenate(rows, axis=1).mean(axis=1)
    with torch.no_grad():
        clean = gated_forward(ref, ids, {})
        if metric == "dla":
            clean = ref.lm_head(ref.model(torch.tensor([ids])).last_hidden_state)[0]
    top = res.table.head(6)
    for _, r in top.iterrows():
        layer, n = int(r["layer"]), int(r["neuron"])
        v = float(means[layer, n]) if ablation == "mean" else 0.0

        def setter(x: torch.Tensor, n: int = n, v: float = v) -> None:
            if ctx == "all":
                x[0, :, n] = v
            else:
                x[0, pos, n] = v

        with torch.no_grad():
            if metric == "dla":
                h = ref.model.layers[layer].mlp.down_proj.register_forward_pre_hook(
                    lambda m, a, s=setter: (lambda x: (s(x), (x,))[1])(a[0].clone())
                )
                out = ref.lm_head(ref.model(torch.tensor([ids])).last_hidden_state)[0]
                h.remove()
            else:
                out = gated_forward(ref, ids, {layer: (None, setter)})
        real = float(out[pos, tid] - clean[pos, tid])
        assert abs(real - float(r["real_delta"])) < 1e-5 * (1 + abs(real))
    if ablation == "zero":
        np.testing.assert_allclose(top["predicted_delta"], -top["influence"], rtol=1e-6)
    assert res.verify is not None and res.verify["n"] == 6
    assert -1 <= res.verify["spearman"] <= 1 and 0 <= res.verify["sign_agreement"] <= 1
    data = json.loads(next(tmp_path.glob("influence_*[0-9l].json")).read_text())
    assert "real_delta" in data["records"][0] and len(data["records"]) == 10


def test_cli_influence_all_prompts_and_files(tiny_run: Path, tmp_path: Path) -> None:
    from neuron_signatures import poc2_analyze_run
    from neuron_signatures.analysis.results import list_rankings

    out = tmp_path / "a"
    assert (
        main(
            [
                "analyze",
                "--mode",
                "influence",
                "--run_dir",
                str(tiny_run),
                "--prompt_id",
                "all",
                "--influence_metric",
                "dla",
                "--target_mode",
                "last_token",
                "--cumulative_threshold",
                "0.5",
                "--out_dir",
                str(out),
            ]
        )
        == 0
    )
    rankings = list_rankings(out)
    assert len(rankings) == 4 and {r.kind for r in rankings} == {"influence"}
    for r in rankings:
        scores = [abs(n.score) for n in r.neurons]
        assert scores == sorted(scores, reverse=True)
        meta = json.loads(r.path.with_name(r.path.stem + "_meta.json").read_text())
        assert meta["closure"]["abs_error"] < 1e-4 and meta["model_dtype"] == "fp32"
        assert meta["activation_check"]["max_abs_diff"] < 1e-4
        total = np.abs(
            np.loadtxt(r.path.with_suffix(".csv"), delimiter=",", skiprows=1, usecols=5)
        ).sum()
        assert sum(scores) >= 0.5 * total
    assert (
        poc2_analyze_run.main(
            [
                "--mode",
                "influence",
                "--run_dir",
                str(tiny_run),
                "--prompt_id",
                "-1",
                "--influence_metric",
                "act_grad",
                "--target_mode",
                "next_token",
                "--target_token",
                "world",
                "--objective",
                "logit_diff",
                "--baseline_token_id",
                "5",
                "--out_dir",
                str(out),
            ]
        )
        == 0
    )
    (f,) = out.glob("influence_short_act_grad_next_token_pos2_tok*_logit_diff.json")
    data = json.loads(f.read_text())
    assert data["target_token"] == "world" and data["objective"] == "logit_diff"


BAD = [
    (["--prompt_id", "nope"], "no prompt with id"),
    (["--target_mode", "next_token", "--target_token", "Austin Texas"], "not one"),
    (
        ["--target_mode", "next_token", "--target_token", "Austin", "--target_token_id", "5"],
        "not both",
    ),
    (["--target_mode", "next_token"], "needs --target_token"),
    (["--influence_metric", "dla", "--objective", "logprob"], "DLA"),
    (["--influence_metric", "dla", "--ctx_idx", "1"], "direct path"),
    (["--ctx_idx", "99"], "outside"),
    (["--objective", "logit_diff"], "baseline"),
]


@pytest.mark.parametrize(("extra", "msg"), BAD)
def test_bad_input_one_line_error(
    tiny_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: list[str], msg: str
) -> None:
    rc = main(
        [
            "analyze",
            "--mode",
            "influence",
            "--run_dir",
            str(tiny_run),
            "--out_dir",
            str(tmp_path),
            *extra,
        ]
    )
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1 and msg in err, err


def _synthetic(tmp_path: Path, model_dir: Path, tokenizer: Any, d_mlp: int, bad_ids: bool) -> Path:
    text = "The capital of Texas is Austin"
    ids = [2, *tokenizer(text, add_special_tokens=False).input_ids]
    if bad_ids:
        ids = ids[:-1]
    prompt = {
        "probe_id": "p",
        "text": text,
        "token_ids": ids,
        "tokens": tokenizer.convert_ids_to_tokens(ids),
    }
    acts = [np.zeros((3, len(ids), d_mlp), np.float32)]
    write_run(tmp_path / "run", [prompt], acts, model_name=str(model_dir))
    return tmp_path / "run"


@pytest.mark.parametrize(
    ("d_mlp", "bad_ids", "msg"),
    [(64, True, "does not reproduce"), (8, False, "the run was made with")],
)
def test_run_mismatch_refused(
    tmp_path: Path,
    tiny_model_dir: Path,
    tiny_tokenizer: Any,
    capsys: pytest.CaptureFixture[str],
    d_mlp: int,
    bad_ids: bool,
    msg: str,
) -> None:
    run_dir = _synthetic(tmp_path, tiny_model_dir, tiny_tokenizer, d_mlp, bad_ids)
    rc = main(["analyze", "--mode", "influence", "--run_dir", str(run_dir)])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1 and msg in err, err
