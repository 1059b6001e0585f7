"""Detection and fuzzing of one side of a layer through the LLM (:mod:`.classify`'s method):
windows per neuron from the held-out split, requests for the explanation and the floor's, the
scores per neuron, or the error that stopped it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from . import classify, llm
from .client import LLMServerError
from .forward import RandomTokens
from .split import LayerArrays, Windows


@dataclass(frozen=True)
class SideData:
    """One side of a layer as the LLM scorers (simulation, detection, fuzzing) see it.

    Attributes:
        sign: the side.
        chosen: neuron → its explanation; ``other``: the floor's donor per neuron (-1: none).
        ho, acts, rnd, rnd_tokens: the side's held-out split, the random windows' activations
            ``[T, d]``, the random windows and their tokens.
        win, vocab: the atlas's windows and vocabulary.
    """

    sign: llm.Sign
    chosen: dict[int, str]
    other: np.ndarray
    ho: Any
    acts: np.ndarray
    rnd: RandomTokens
    rnd_tokens: dict[int, list[str]]
    win: Windows
    vocab: list[str]


@dataclass
class Classified:
    """Per neuron of one side: its ``classifiers`` record, or the error that stopped it."""

    scores: dict[int, dict[str, Any]]
    errors: dict[int, str]


def classify_side(
    send: Callable[[dict[tuple[Any, ...], llm.Request]], dict[tuple[Any, ...], Any]],
    logprobs: bool,
    kinds: list[str],
    sd: SideData,
    arr: LayerArrays,
    seed: int,
) -> Classified:
    """Detection and fuzzing (``kinds``) of every chosen explanation of one side of a layer.

    Args:
        send: answers a dict of keyed requests (the run's batching, server-gone stop).
        logprobs: ask for ``top_logprobs`` (the server offers them).
        kinds: among :data:`.classify.KINDS`.
        sd: the side (explanations, donors, held-out split, random windows).
        arr, seed: the layer's arrays, the run's seed.
    """
    chosen, other, ho, acts, rnd = sd.chosen, sd.other, sd.ho, sd.acts, sd.rnd
    rnd_tokens, win, vocab, sign = sd.rnd_tokens, sd.win, sd.vocab, sd.sign
    out = Classified({}, {})
    if not kinds or not chosen:
        return out
    f, side_i = (1.0, 0) if sign == "positive" else (-1.0, 1)
    extreme = arr.max if sign == "positive" else -arr.min
    ctx = win.ctx_len
    lo = np.searchsorted(rnd.g // ctx, rnd.wins, "left")
    hi = np.searchsorted(rnd.g // ctx, rnd.wins, "right")
    train_g = np.concatenate([arr.top_g[:, 0::2], arr.bot_g[:, 0::2]], axis=1)
    train = np.where(train_g >= 0, train_g // ctx, -1)  # every train window, both sides
    plans: dict[int, classify.Plan] = {}
    reqs: dict[tuple[Any, ...], llm.Request] = {}
    for i, e in chosen.items():
        toks = {**rnd_tokens}
        toks.update(
            {int(w): llm.window_tokens(win, int(w), vocab) for w in ho.ex_windows[i] if w >= 0}
        )
        rnd_values = {
            int(w): f * acts[lo[k] : hi[k], i].astype(np.float64) for k, w in enumerate(rnd.wins)
        }
        excluded = set(rnd.wins[ho.rnd_excluded[i]].tolist())
        active, cands = classify.neuron_windows(
            i, ho.ex_windows[i], f * ho.ex_value[i], rnd_values, excluded, toks, win.start
        )
        rng = np.random.default_rng([seed, arr.layer, side_i, i, 22])
        p = classify.plan(kinds, active, cands, float(extreme[i]), set(train[i].tolist()), rng)
        plans[i] = p
        donor = chosen.get(int(other[i])) if other[i] >= 0 else None
        for kind in kinds:
            for b, batch in enumerate(p.groups[kind]):
                for role, expl in (("score", e), ("floor", donor)):
                    if expl is not None:
                        reqs[(i, kind, b, role)] = classify.request(
                            kind, expl, batch, sign, logprobs
                        )
    answers = send(reqs)
    for i, p in plans.items():
        has_floor = chosen.get(int(other[i])) is not None if other[i] >= 0 else False
        res: dict[str, Any] = {}
        try:
            for kind in kinds:
                n = [len(b) for b in p.groups[kind]]
                got = [classify.parse(answers[(i, kind, b, "score")], k) for b, k in enumerate(n)]
                fl = (
                    [classify.parse(answers[(i, kind, b, "floor")], k) for b, k in enumerate(n)]
                    if has_floor
                    else None
                )
                res[kind] = classify.result(p, kind, got, fl, int(other[i]) if has_floor else None)
        except LLMServerError as exc:
            out.errors[i] = f"{sign} side, {kind}: {exc}"
            continue
        out.scores[i] = res
    return out
