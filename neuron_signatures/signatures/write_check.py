"""Say X write check: is a Say X neuron's name among the tokens its output actually promotes?

A Say X name comes only from the probe text (the semantic token its functional peaks point at).
The check asks the neuron's weights instead:

1. The named token's vocabulary ids: the ids of the probe tokens whose key is the Say X target
   (usually one id, e.g. ``▁Austin``); each id must decode to the piece the run stored.
2. The neuron's write direction ``W_out[l][:, n] ⊙ (1 + g_post_mlp[l]) ⊙ (1 + g_final)``
   (:func:`~neuron_signatures.attribution.write_scores.write_directions`), signed like the
   neuron's activation at the peaks that voted for the name: a neuron firing negative there
   promotes what the direction suppresses.
3. Its scores ``W_U @ direction`` over the whole vocabulary, in chunks. Times the positive
   ``|activation| / (rms_post · rms_final)`` they are the neuron's exact direct logit
   attribution to every token, so the order is exact, not a lens approximation. The rank of the
   name is 1 + the number of tokens scoring strictly higher (the best of its ids).
4. The name *agrees* when its rank is ≤ ``cfg.say_x_write_top_n``.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from ..errors import BadArgumentError, ModelLoadError, NeuronSignaturesError
from ..store import Run
from ..tokens import token_ascii, token_display
from .result import CHECKED, NO_SAY_X, SignatureResult, WriteCheck

log = logging.getLogger(__name__)
VOCAB_CHUNK = 16384


def say_x_tokens(res: SignatureResult) -> list[str | None]:
    """``[K]`` the token each Say X neuron is named after (None for other classes)."""
    target = res.aggregates.say_target
    return [
        res.tables.display[int(target[k])] if c == "say_x" else None
        for k, c in enumerate(res.classification.classes)
    ]


def unchecked(res: SignatureResult, status: str) -> WriteCheck:
    """A check with no ranks (skipped, or nothing to check)."""
    none = [None] * len(res.selection)
    return WriteCheck(list(none), list(none), list(none), res.config.say_x_write_top_n, status)


def _voting_sign(res: SignatureResult) -> np.ndarray:
    """``[K]`` ±1: the sign of the summed activation over the probes whose peak is on the
    dominant functional token and points at the Say X target."""
    agg, pm = res.aggregates, res.metrics
    voted = (
        (pm.peak_key == agg.functional_token[None, :])
        & (pm.say_target_key == agg.say_target[None, :])
        & (agg.say_target >= 0)[None, :]
    )
    signed = np.where(voted, np.nan_to_num(pm.peak_activation), 0.0).sum(axis=0)
    return np.where(signed < 0, -1.0, 1.0)


def _target_ids(res: SignatureResult, k: int) -> dict[int, str]:
    """``{token id: stored piece}`` of every probe token whose key is neuron ``k``'s target."""
    key = int(res.aggregates.say_target[k])
    out: dict[int, str] = {}
    for i in res.metrics.probes:  # prompt metadata only
        pt = res.tables.prompts[i]
        skip = pt.record.seq_len - len(pt.key_ids)
        for j in np.flatnonzero(pt.key_ids == key).tolist():
            out.setdefault(int(pt.record.token_ids[skip + j]), pt.record.tokens[skip + j])
    return out


def token_ranks(w_u: Any, dirs: Any, ids: list[list[int]], chunk: int = VOCAB_CHUNK) -> Any:
    """Best rank (1 = highest score) of each column's ``ids`` in ``W_U @ dirs`` over the whole
    vocabulary, and each column's top token id: ``(ranks [n], top [n])`` int64 arrays.

    Exact: every score comes from the same chunked product, so a token's score is compared
    with the others bit for bit (ties count for the token). Memory: ``[n, vocab]`` float32.
    """
    import torch

    scores = torch.cat(
        [(w_u[lo : lo + chunk].float() @ dirs).T.cpu() for lo in range(0, w_u.shape[0], chunk)],
        dim=1,
    )  # [n, vocab]
    ranks = [
        int((scores[j] > scores[j, torch.tensor(col)].max()).sum()) + 1
        for j, col in enumerate(ids)  # one row per Say X neuron
    ]
    return np.array(ranks, np.int64), scores.argmax(dim=1).numpy().astype(np.int64)


def _load(run: Run, device: str, dtype: str) -> Any:
    from ..models import load_model

    log.info("loading %s for the Say X write check", run.model_name)
    try:
        return load_model(run.model_name, device=device, dtype=dtype)
    except NeuronSignaturesError as e:
        raise ModelLoadError(
            f"the Say X write check needs the run's model. {e}; or give --no_write_check"
        ) from None


def _check_model(lm: Any, run: Run, wanted: dict[int, str], vocab: int) -> None:
    fix = f"the run was made with {run.model_name}; give --no_write_check to skip the check"
    if lm.n_layers != run.n_layers or lm.d_mlp != run.d_mlp:
        raise BadArgumentError(
            f"model {lm.name} has {lm.n_layers} layers x {lm.d_mlp} neurons but the run "
            f"{run.n_layers} x {run.d_mlp}: {fix}"
        )
    ids = sorted(wanted)
    got = lm.tokenizer.convert_ids_to_tokens(ids) if max(ids) < vocab else [None] * len(ids)
    read = dict(zip(ids, got, strict=True))
    # prototype runs stored only the ASCII form of each piece
    if any(read[i] is None or wanted[i] not in (read[i], token_ascii(read[i])) for i in ids):
        raise BadArgumentError(
            f"model {lm.name} does not read the stored token ids {ids} as the run's pieces: {fix}"
        )


def check_say_x(
    run: Run, res: SignatureResult, lm: Any = None, device: str = "cpu", dtype: str = "fp32"
) -> WriteCheck:
    """Rank every Say X neuron's named token by the neuron's write scores (module docstring).

    Loads ``run.model_name`` once, only when there is a Say X neuron and no ``lm`` is given.
    """
    import torch

    from ..attribution.trace import model_weights
    from ..attribution.write_scores import write_directions

    ks = [k for k, c in enumerate(res.classification.classes) if c == "say_x"]
    if not ks:
        return unchecked(res, NO_SAY_X)
    ids = [_target_ids(res, k) for k in ks]
    lm = lm if lm is not None else _load(run, device, dtype)
    w = model_weights(lm)
    _check_model(lm, run, {i: p for d in ids for i, p in d.items()}, int(w.w_u.shape[0]))
    neurons = [(int(res.selection.layers[k]), int(res.selection.neurons[k])) for k in ks]
    sign = torch.tensor(_voting_sign(res)[ks], dtype=torch.float32)
    dirs = (write_directions(w, neurons) * sign[None, :]).to(w.w_u.device)
    ranks, top = token_ranks(w.w_u, dirs, [sorted(d) for d in ids])
    top_pieces = lm.tokenizer.convert_ids_to_tokens(top.tolist())
    n, top_n = len(res.selection), res.config.say_x_write_top_n
    rank: list[int | None] = [None] * n
    agrees: list[bool | None] = [None] * n
    top_token: list[str | None] = [None] * n
    for j, k in enumerate(ks):
        rank[k], agrees[k] = int(ranks[j]), bool(ranks[j] <= top_n)
        piece = top_pieces[j]  # None: an id past the tokenizer's vocabulary (padded unembed)
        top_token[k] = token_display(piece) if piece is not None else f"<{int(top[j])}>"
    return WriteCheck(rank, agrees, top_token, top_n, CHECKED, lm.name, int(w.w_u.shape[0]))
