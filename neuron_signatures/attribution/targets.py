"""What an influence analysis scores: the prompt(s), the target logit and the scored positions.

Target modes (as in the prototype):

* ``top1_logit``: the model's argmax at ``target_pos``;
* ``last_token``: teacher forcing: the logit row before the last token, whose target is the last
  token (``target_pos`` is ignored);
* ``next_token``: a given token at ``target_pos``: ``--target_token`` (exactly one token, leading
  space kept) or ``--target_token_id``, not both.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..errors import BadArgumentError
from ..store import PromptRecord, Run

TARGET_MODES = ("top1_logit", "last_token", "next_token")


@dataclass(frozen=True)
class Target:
    """A resolved target: logit row ``pos`` (absolute), token id and its string."""

    mode: str
    pos: int
    token_id: int
    token: str


def resolve_prompts(run: Run, key: str | int) -> list[PromptRecord]:
    """``all`` → every prompt; otherwise one prompt by id first, then by (negative) index."""
    if (
        isinstance(key, str)
        and key.strip().lower() == "all"
        and all(p.probe_id != key for p in run.prompts)
    ):
        return list(run.prompts)
    return [run.prompt(key)]


def single_token_id(tokenizer: Any, text: str, flag: str) -> int:
    """The id of ``text`` if it is exactly one token (no special tokens added), else an error."""
    ids = list(tokenizer(text, add_special_tokens=False).input_ids)
    if len(ids) != 1:
        pieces = tokenizer.convert_ids_to_tokens(ids) if ids else []
        raise BadArgumentError(
            f"{flag} {text!r} is {len(ids)} tokens {pieces}, not one: pass a single token "
            f"(mind the leading space) or its id with {flag}_id"
        )
    return int(ids[0])


def token_id_arg(tokenizer: Any, text: str | None, token_id: int | None, flag: str) -> int | None:
    """Resolve a ``--X_token`` / ``--X_token_id`` pair (at most one may be given)."""
    if text is not None and token_id is not None:
        raise BadArgumentError(f"pass {flag} or {flag}_id, not both")
    if token_id is not None:
        vocab = len(tokenizer)
        if not 0 <= token_id < vocab:
            raise BadArgumentError(f"{flag}_id {token_id} is out of range 0..{vocab - 1}")
        return int(token_id)
    if text is not None:
        return single_token_id(tokenizer, text, flag)
    return None


def target_position(mode: str, target_pos: int, seq_len: int) -> int:
    """The absolute logit row the target is read from."""
    if mode == "last_token":
        if seq_len < 2:
            raise BadArgumentError("target_mode last_token needs a prompt of 2 tokens or more")
        return seq_len - 2
    if not -seq_len <= target_pos < seq_len:
        raise BadArgumentError(
            f"--target_pos {target_pos} is outside the prompt ({seq_len} tokens): use "
            f"{-seq_len}..{seq_len - 1}"
        )
    return target_pos % seq_len


def parse_ctx(ctx_idx: str | int | None, pos: int, seq_len: int) -> int | None:
    """Scored position: ``None`` → the target position; ``all`` → None (sum over positions)."""
    if ctx_idx is None:
        return pos
    if str(ctx_idx).strip().lower() == "all":
        return None
    try:
        c = int(ctx_idx)
    except ValueError:
        raise BadArgumentError(f"--ctx_idx {ctx_idx!r} must be an integer or 'all'") from None
    if not -seq_len <= c < seq_len:
        raise BadArgumentError(f"--ctx_idx {c} is outside the prompt ({seq_len} tokens)")
    c %= seq_len
    if c > pos:
        raise BadArgumentError(
            f"--ctx_idx {c} is after the target position {pos}: a later position cannot "
            "influence that logit; use a position <= the target's"
        )
    return c


def check_tokenisation(tokenizer: Any, run: Run, prompt: PromptRecord) -> bool:
    """Refuse when re-tokenising the prompt text does not give the run's stored token ids.

    A run dumped with ``--truncate`` stored each prompt cut to its ``--max_seq_len`` (the
    manifest's ``capture``): the text is re-tokenised and cut the same way. Returns whether the
    stored tokens are such a cut (influence then scores the stored tokens only).
    """
    from ..capture import tokenize_prompts
    from ..prompts import Prompt

    full = tokenize_prompts(
        tokenizer,
        [Prompt(prompt.probe_id, prompt.text)],
        prepend_bos=run.prepend_bos,
        max_seq_len=2**62,  # no limit: the cut, if any, is applied below
        truncate=False,
    )[0]["token_ids"]
    capture = run.manifest.get("capture") or {}
    limit = capture.get("max_seq_len") if capture.get("truncate") else None
    want = list(full[: int(limit)] if limit else full)
    if want != list(prompt.token_ids):
        cut = f" cut to {limit}" if limit else ""
        raise BadArgumentError(
            f"the tokenizer of the model does not reproduce the stored tokens of prompt "
            f"{prompt.probe_id!r} ({len(want)}{cut} vs {len(prompt.token_ids)} tokens): pass "
            f"the run's model with --model_name (the run was made with {run.model_name})"
        )
    return len(full) > len(want)


def token_string(tokenizer: Any, token_id: int) -> str:
    """The decoded string of one token (leading space kept)."""
    return str(tokenizer.decode([int(token_id)]))


def prediction(tokenizer: Any, row: Any, target_id: int, k: int = 5) -> dict[str, Any]:
    """What the model predicts at the target row: its top ``k`` tokens and the target's place.

    Args:
        row: ``[vocab]`` the model's output logits (after any final softcap).

    Returns:
        ``target_prob`` (softmax), ``target_rank`` (1 = the argmax; ties count in the target's
        favour) and ``top_tokens`` (``token, token_id, prob``, most probable first).
    """
    import torch

    probs = torch.softmax(row.detach().double(), dim=-1)
    p_target = probs[target_id]
    top = probs.topk(min(k, probs.shape[0]))
    ids = top.indices.tolist()
    names = tokenizer.batch_decode([[i] for i in ids])
    return {
        "target_prob": float(p_target),
        "target_rank": int((probs > p_target).sum()) + 1,
        "top_tokens": [
            {"token": t, "token_id": i, "prob": float(v)}
            for t, i, v in zip(names, ids, top.values.tolist(), strict=True)
        ],
    }
