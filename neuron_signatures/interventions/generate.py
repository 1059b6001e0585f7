"""Continuations with and without the interventions, generated side by side in one batch.

1. Row 0 is the clean model ("before"); row ``i`` carries set ``i`` (the hooks of :mod:`.hooks`).
2. Each step recomputes the whole sequence (no KV cache: a few dozen tokens, and the edits of the
   prompt positions stay in force exactly as in the first forward) and picks the next token of
   every row from the last position's logits: the argmax when ``temperature`` is 0 (greedy, as
   ``transformers``' ``generate(do_sample=False)``), otherwise a draw from
   ``softmax(logits / temperature)`` with a ``torch.Generator`` seeded by ``seed`` (on the CPU, so
   a seed gives the same draws on every device).
3. Positions: with ``all`` the edit applies at every position, each newly generated one included;
   with ``last`` or a list, only at those prompt positions (the generated tokens are not edited,
   but they attend to the edited prompt).
4. A row stops at its first end-of-sequence token (kept); the loop ends when every row has.
"""

from __future__ import annotations

from typing import Any

import torch

from ..errors import BadArgumentError
from ..models import LoadedModel
from .hooks import edit_hooks, edited_logits
from .spec import InterventionSet, Positions


def eos_ids(lm: LoadedModel) -> set[int]:
    """The end-of-sequence ids of the model's generation config (or its tokenizer's)."""
    cfg = getattr(getattr(lm, "plain_model", None), "generation_config", None)
    eos: Any = getattr(cfg, "eos_token_id", None)
    if eos is None:
        eos = lm.tokenizer.eos_token_id
    if eos is None:
        return set()
    return {int(e) for e in (eos if isinstance(eos, list | tuple) else [eos])}


def next_tokens(logits: torch.Tensor, temperature: float, gen: torch.Generator) -> torch.Tensor:
    """``[rows]`` next tokens from ``logits [rows, vocab]``: argmax, or a seeded draw."""
    if temperature == 0:
        return logits.argmax(-1)
    probs = torch.softmax(logits.double().cpu() / temperature, dim=-1)
    return torch.multinomial(probs, 1, generator=gen)[:, 0].to(logits.device)


def generate(
    lm: LoadedModel,
    prompt_ids: list[int],
    sets: list[InterventionSet],
    positions: Positions,
    n_new: int,
    temperature: float = 0.0,
    seed: int = 0,
) -> list[list[int]]:
    """New token ids of ``[before, *sets]``, each cut after its first end-of-sequence token."""
    if n_new < 0 or temperature < 0:
        raise BadArgumentError("--generate and --temperature must be 0 or more")
    rows = [InterventionSet((), "before"), *sets]
    hooks = edit_hooks(rows, positions.resolve(len(prompt_ids)))
    gen = torch.Generator().manual_seed(seed)
    stop = eos_ids(lm)
    seq = torch.tensor([prompt_ids] * len(rows), device=lm.device)
    out: list[list[int]] = [[] for _ in rows]
    done = [False] * len(rows)
    for _ in range(n_new):
        nxt = next_tokens(edited_logits(lm, seq, hooks), temperature, gen)
        seq = torch.cat([seq, nxt[:, None]], dim=1)
        for r, t in enumerate(nxt.tolist()):
            if not done[r]:
                out[r].append(int(t))
                done[r] = int(t) in stop
        if all(done):
            break
    return out
