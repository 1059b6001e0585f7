"""The arguments and the per-prompt result of an influence analysis (shared by
:mod:`.influence`, which computes, and :mod:`.influence_report`, which writes)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..analysis.selection import Selection, make_selection
from .targets import Target


@dataclass
class InfluenceConfig:
    """Arguments of an influence analysis (the CLI flags of the same names)."""

    run_dir: Path
    prompt_id: str | int = 0
    metric: str = "act_grad"  # dla | act_grad
    target_mode: str = "top1_logit"  # top1_logit | last_token | next_token
    target_pos: int = -1
    target_token: str | None = None
    target_token_id: int | None = None
    ctx_idx: str | int | None = None  # None: the target position; "all": sum over positions
    objective: str = "logit"  # logit | logprob | logit_diff
    baseline_token: str | None = None
    baseline_token_id: int | None = None
    dla_mode: str = "exact"  # exact | approx
    verify_top: int = 0
    ablation: str = "zero"  # zero | mean
    model_name: str | None = None
    device: str | None = None
    model_dtype: str = "fp32"
    selection: Selection = field(default_factory=lambda: make_selection(None, None))
    out_dir: Path | None = None
    args: dict[str, Any] = field(default_factory=dict)


@dataclass
class InfluenceResult:
    """One prompt's influence table (every neuron, sorted by |influence|) and its files."""

    prompt_id: str
    target: Target
    table: Any  # pandas DataFrame
    meta: dict[str, Any]
    files: list[Path] = field(default_factory=list)
    verify: dict[str, Any] | None = None
