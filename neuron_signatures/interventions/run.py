"""Before/after comparison of intervention sets on one prompt, in one batched forward.

1. Tokenise the prompt with one BOS (as ``dump`` does) and resolve the positions against it.
2. Run ``1 + len(sets)`` copies of the prompt in one batch through the bridge: row 0 clean
   ("before"), row ``i`` with set ``i``'s edits on ``blocks.{l}.mlp.hook_post``
   (:mod:`.hooks`).
3. Read the next-token logits (last position, after any final softcap) of every row: the top-k
   tokens with their probabilities, the listed tokens' logit, probability and rank (1 = argmax,
   ties in the token's favour), and KL(before‖after) = Σ p_before (log p_before − log p_after),
   computed in float64 from log-softmax.
4. Optionally generate a continuation per row (:mod:`.generate`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from ..models import LoadedModel
from .spec import InterventionSet, Positions, check_prompt, check_sets


@dataclass
class TokenStat:
    """One token of a next-token distribution."""

    token: str
    token_id: int
    logit: float
    prob: float
    rank: int  # 1 = the most probable; ties count in the token's favour


@dataclass
class RowResult:
    """The next-token prediction of one batch row (``before`` or one intervention set)."""

    label: str
    edits: list[str]  # e.g. ["L17/N345=0", "L16/N1682×3"]
    top: list[TokenStat]
    listed: list[TokenStat]
    kl: float  # KL(before‖this row) in nats; 0 for "before"
    continuation: str | None = None  # generated text (with --generate)
    continuation_ids: list[int] | None = None


@dataclass
class InterventionResult:
    """Everything the CLI and the web app show; ``logits`` ([rows, vocab], float32) is not in
    :meth:`to_json`."""

    model: str
    dtype: str  # compute dtype of the model
    device: str
    prompt: str
    token_ids: list[int]
    tokens: list[str]
    positions: str  # as typed: last | all | 3,5
    edited_positions: list[int] | None  # absolute prompt positions; None = every position
    rows: list[RowResult]
    generation: dict[str, Any] | None = None  # {"n_new", "temperature", "seed"}
    logits: Any = field(default=None, repr=False)

    def to_json(self) -> dict[str, Any]:
        out = dataclasses.asdict(dataclasses.replace(self, logits=None))
        del out["logits"]
        return out


def prompt_token_ids(tokenizer: Any, text: str) -> list[int]:
    """One BOS, then the prompt's tokens (the way ``dump`` tokenises)."""
    from ..capture import tokenize_prompts
    from ..prompts import Prompt

    check_prompt(text)
    recs = tokenize_prompts(
        tokenizer, [Prompt("prompt", text)], prepend_bos=True, max_seq_len=2**62, truncate=False
    )
    return [int(i) for i in recs[0]["token_ids"]]


def listed_token_ids(tokenizer: Any, text: str | None, ids: list[int] | None = None) -> list[int]:
    """``" Austin| Dallas"`` (each exactly one token, leading space kept) plus explicit ids."""
    from ..attribution.targets import single_token_id, token_id_arg

    out = [single_token_id(tokenizer, s, "--tokens") for s in (text or "").split("|") if s]
    for i in ids or []:
        out.append(int(token_id_arg(tokenizer, None, i, "--tokens") or 0))
    return list(dict.fromkeys(out))


def token_stats(tokenizer: Any, logits: Any, token_ids: list[int]) -> list[TokenStat]:
    """Logit, probability (softmax in float64) and rank of ``token_ids`` in ``logits [vocab]``."""
    import torch

    row = logits.double()
    probs = torch.softmax(row, dim=-1)
    names = tokenizer.batch_decode([[i] for i in token_ids])
    return [
        TokenStat(t, i, float(row[i]), float(probs[i]), int((row > row[i]).sum()) + 1)
        for t, i in zip(names, token_ids, strict=True)
    ]


def kl_divergence(before: Any, after: Any) -> Any:
    """KL(before‖after) per row in nats, float64: ``before [vocab]``, ``after [rows, vocab]``."""
    import torch

    lp = torch.log_softmax(before.double(), dim=-1)
    lq = torch.log_softmax(after.double(), dim=-1)
    return (lp.exp() * (lp - lq)).sum(-1)


def run_interventions(
    lm: LoadedModel,
    prompt: str,
    sets: list[InterventionSet],
    positions: Positions | None = None,
    listed: list[int] | None = None,
    top_k: int = 10,
) -> InterventionResult:
    """Compare the model's next-token prediction before and after each set (see module doc)."""
    import torch

    from .hooks import edit_hooks, edited_logits

    check_sets(sets, lm.n_layers, lm.d_mlp)
    positions = positions or Positions("last")
    ids = prompt_token_ids(lm.tokenizer, prompt)
    where = positions.resolve(len(ids))
    rows = [InterventionSet((), "before"), *sets]
    x = torch.tensor([ids] * len(rows), device=lm.device)
    logits = edited_logits(lm, x, edit_hooks(rows, where)).cpu()
    kl = kl_divergence(logits[0], logits)
    k = min(top_k, logits.shape[-1])
    results = [
        RowResult(
            label=s.label,
            edits=[str(e) for e in s.edits],
            top=token_stats(lm.tokenizer, logits[r], logits[r].topk(k).indices.tolist()),
            listed=token_stats(lm.tokenizer, logits[r], list(listed or [])),
            kl=0.0 if r == 0 else float(kl[r]),
        )
        for r, s in enumerate(rows)
    ]
    return InterventionResult(
        model=lm.name,
        dtype=lm.dtype,
        device=lm.device,
        prompt=prompt,
        token_ids=ids,
        tokens=[str(t) for t in lm.tokenizer.convert_ids_to_tokens(ids)],
        positions=str(positions),
        edited_positions=where,
        rows=results,
        logits=logits,
    )


def add_generation(
    lm: LoadedModel,
    res: InterventionResult,
    sets: list[InterventionSet],
    positions: Positions,
    n_new: int,
    temperature: float = 0.0,
    seed: int = 0,
) -> InterventionResult:
    """Fill every row's continuation (``n_new`` tokens; see :func:`.generate.generate`)."""
    from .generate import generate

    conts = generate(lm, res.token_ids, sets, positions, n_new, temperature, seed)
    for row, c in zip(res.rows, conts, strict=True):
        row.continuation_ids = c
        row.continuation = str(lm.tokenizer.decode(c))
    res.generation = {"n_new": n_new, "temperature": temperature, "seed": seed}
    return res
