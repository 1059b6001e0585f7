"""The offline explainer: a token lookup table per neuron and sign, its rendering and simulator.

Method (per layer, all neurons at once):

1. Take every train token of the neuron (:func:`.split.train_tokens`); for the negative side
   negate the activations.
2. Group by token id: the mean activation and the count of each token.
3. Keep the ``k`` tokens of highest positive mean, shrunk toward 0 by a prior count
   (``sum / (count + prior)``; ties: more occurrences first, then the lower id): that list *is*
   the explanation. Rendered, the first few read
   ``fires on " Texas" (9.1, 14×), ...``; the output part comes from the atlas's write scores and
   says so.
4. **Contexts** (:func:`add_contexts`): group the train tokens by ``(previous token, token)``;
   a bigram seen at least ``min_count`` times predicts its own mean (clipped at 0) instead of
   the token's. Keep per neuron the ``k_ctx`` bigrams whose prediction changes most on the
   train tokens (``count * (bigram mean - back-off)^2``, the squared error they remove). Which
   neurons keep their contexts is chosen on a validation slice (:mod:`.layer`); the rendered
   line names the first contexts that raise the activation, ``in: " of<< Texas>>" (11, 6×)``
   (delphi's ``<<...>>`` marks the token, the text before it is the previous token).
5. The simulator is the table itself (OpenAI's simulator predicts an activation per token from
   the explanation; here: the bigram's mean where the neuron has a context for
   ``(previous, token)``, else the listed token's train mean, else 0: back-off). Pearson
   correlation ignores the scale, so no calibration is needed (OpenAI's calibrated simulator is
   an affine map, which leaves the correlation unchanged).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import numpy as np

from ..tokens import SPIECE_SPACE
from .split import TrainTokens

SIDES = ("positive", "negative")
SHOWN = 3  # tokens named in the rendered explanation


CTX_FIELDS = ("ctx_prev", "ctx_ids", "ctx_means", "ctx_counts")


def _empty(d: int, dtype: type) -> np.ndarray:
    return np.zeros((d, 0), dtype)


@dataclass
class LookupTable:
    """The explanations of one side of a layer: ``ids / means / counts [d, k]`` (id -1: empty;
    ``means`` are on the side's scale: negated activations for the negative side), and the
    contexts ``ctx_prev / ctx_ids / ctx_means / ctx_counts [d, k_ctx]`` (the bigram
    ``(ctx_prev, ctx_ids)``; id -1: empty; ``[d, 0]`` when the layer has none)."""

    ids: np.ndarray
    means: np.ndarray
    counts: np.ndarray
    ctx_prev: np.ndarray = field(default_factory=lambda: _empty(0, np.int64))
    ctx_ids: np.ndarray = field(default_factory=lambda: _empty(0, np.int64))
    ctx_means: np.ndarray = field(default_factory=lambda: _empty(0, np.float64))
    ctx_counts: np.ndarray = field(default_factory=lambda: _empty(0, np.int64))

    def __post_init__(self) -> None:
        d = self.ids.shape[0]
        for name, dtype in zip(CTX_FIELDS, (np.int64, np.int64, np.float64, np.int64), strict=True):
            if getattr(self, name).shape[0] != d:
                setattr(self, name, _empty(d, dtype))

    @property
    def has(self) -> np.ndarray:
        """``[d]``: the neuron has an explanation on this side."""
        return self.ids[:, 0] >= 0

    @property
    def has_contexts(self) -> np.ndarray:
        """``[d]``: the neuron has contexts on this side."""
        return np.asarray((self.ctx_ids >= 0).any(1))

    def take(self, rows: np.ndarray) -> LookupTable:
        return LookupTable(*(getattr(self, f)[rows] for f in self.__dataclass_fields__))

    def rounded(self) -> LookupTable:
        """This table with its means rounded to float32, as :mod:`.output` stores them (the run
        scores and records these, so a stored table simulates the scored values)."""
        out = LookupTable(*(getattr(self, f) for f in self.__dataclass_fields__))
        out.means = self.means.astype(np.float32).astype(np.float64)
        out.ctx_means = self.ctx_means.astype(np.float32).astype(np.float64)
        return out

    def clear(self, rows: np.ndarray, contexts_only: bool = False) -> None:
        """Empty the rows ``rows`` (a mask or indices): the contexts, or everything."""
        for name in CTX_FIELDS if contexts_only else self.__dataclass_fields__:
            a = getattr(self, name)
            a[rows] = -1 if name in ("ids", "ctx_ids", "ctx_prev") else 0


@dataclass
class TokenMeans:
    """Step 2 for both sides: per ``(neuron, token)`` group of the train tokens, the mean
    activation and the count, sorted by neuron then token."""

    neuron: np.ndarray
    token: np.ndarray
    mean: np.ndarray
    count: np.ndarray


def token_means(train: TrainTokens) -> TokenMeans:
    """Mean activation and count of every ``(neuron, token)`` of the train split."""
    vocab = int(train.token.max()) + 1 if len(train.token) else 1
    keys, inv = np.unique(train.neuron * vocab + train.token, return_inverse=True)
    counts = np.bincount(inv, minlength=len(keys))
    means = np.bincount(inv, weights=train.value, minlength=len(keys)) / np.maximum(counts, 1)
    return TokenMeans(keys // vocab, keys % vocab, means, counts)


def group_ranks(groups: TokenMeans, side: str, prior: float = 0.0) -> np.ndarray:
    """``[n_groups]``: each group's rank in its neuron's table for ``side`` (step 3; -1 where
    the side's mean is not positive), ranked by ``sum / (count + prior)``, then more
    occurrences, then the lower id (groups are sorted by neuron then token)."""
    means = groups.mean if side == "positive" else -groups.mean
    cand = np.flatnonzero(means > 0)
    rank_by = means[cand] * groups.count[cand] / (groups.count[cand] + prior)
    # lexsort is stable and the groups are sorted by token within a neuron: ties keep id order
    order = cand[np.lexsort((-groups.count[cand], -rank_by, groups.neuron[cand]))]
    n = groups.neuron[order]
    out = np.full(len(means), -1, np.int64)
    out[order] = np.arange(len(order)) - np.searchsorted(n, n, side="left")
    return out


def explain_layer(
    groups: TokenMeans, d: int, side: str, k: int = 8, prior: float = 0.0
) -> LookupTable:
    """The token-lookup explanations of ``d`` neurons for ``side`` (module doc, steps 1-3).

    ``prior`` > 0 ranks tokens by ``sum / (count + prior)`` (a mean shrunk toward 0, so a token
    seen once does not outrank one seen often); the table keeps the plain means.
    """
    return table_from_ranks(groups, group_ranks(groups, side, prior), d, side, k)


def table_from_ranks(
    groups: TokenMeans, rank: np.ndarray, d: int, side: str, k: int
) -> LookupTable:
    """The table of the groups ranked below ``k`` (:func:`group_ranks`)."""
    sel = (rank >= 0) & (rank < k)
    n, r = groups.neuron[sel], rank[sel]
    out = LookupTable(
        ids=np.full((d, k), -1, np.int64),
        means=np.zeros((d, k), np.float64),
        counts=np.zeros((d, k), np.int64),
    )
    out.ids[n, r] = groups.token[sel]
    out.means[n, r] = (groups.mean if side == "positive" else -groups.mean)[sel]
    out.counts[n, r] = groups.count[sel]
    return out


@dataclass
class Bigrams:
    """Per ``(neuron, previous token, token)`` group of train tokens: mean and count, sorted."""

    neuron: np.ndarray
    prev: np.ndarray
    token: np.ndarray
    mean: np.ndarray
    count: np.ndarray


def bigram_means(train: TrainTokens) -> Bigrams:
    """Mean activation and count of every ``(neuron, previous token, token)`` of the train
    split (a token at position 0 has previous token -1)."""
    v = int(max(train.token.max(initial=0), train.prev.max(initial=0))) + 2
    keys, inv = np.unique(
        (train.neuron * v + train.prev + 1) * v + train.token, return_inverse=True
    )
    counts = np.bincount(inv, minlength=len(keys))
    means = np.bincount(inv, weights=train.value, minlength=len(keys)) / np.maximum(counts, 1)
    return Bigrams(keys // (v * v), (keys // v) % v - 1, keys % v, means, counts)


def _join(keys: np.ndarray, table_keys: np.ndarray) -> np.ndarray:
    """Index into ``table_keys`` (unique) of each of ``keys``; -1 where absent."""
    if len(table_keys) == 0:
        return np.full(keys.shape, -1, np.int64)
    order = np.argsort(table_keys, kind="stable")
    at = np.searchsorted(table_keys[order], keys).clip(0, len(table_keys) - 1)
    return np.where(table_keys[order][at] == keys, order[at], -1)


def backoff(table: LookupTable, neuron: np.ndarray, token: np.ndarray) -> np.ndarray:
    """The unigram prediction of ``(neuron, token)`` pairs: the listed token's mean, else 0."""
    v = int(max(table.ids.max(initial=0), token.max(initial=0))) + 1
    n_i, j_i = np.nonzero(table.ids >= 0)
    if len(n_i) == 0:
        return np.zeros(len(token))
    hit = _join(neuron * v + token, n_i * v + table.ids[n_i, j_i])
    return np.where(hit >= 0, table.means[n_i, j_i][hit.clip(0)], 0.0)


def add_contexts(
    table: LookupTable, bigrams: Bigrams, side: str, k_ctx: int, min_count: int
) -> LookupTable:
    """``table`` with each neuron's ``k_ctx`` most useful contexts (module doc, step 4); rows
    of neurons without a unigram explanation get none. Ties: more occurrences, then lower ids."""
    d = table.ids.shape[0]
    means = bigrams.mean if side == "positive" else -bigrams.mean
    keep = (bigrams.count >= min_count) & table.has[bigrams.neuron]
    n, prev, tok = bigrams.neuron[keep], bigrams.prev[keep], bigrams.token[keep]
    value, count = np.maximum(means[keep], 0.0), bigrams.count[keep]
    gain = count * (value - backoff(table, n, tok)) ** 2
    ok = gain > 0
    n, prev, tok, value, count, gain = n[ok], prev[ok], tok[ok], value[ok], count[ok], gain[ok]
    order = np.lexsort((tok, prev, -count, -gain, n))
    n, prev, tok, value, count = n[order], prev[order], tok[order], value[order], count[order]
    rank = np.arange(len(n)) - np.searchsorted(n, n, side="left")
    sel = rank < k_ctx
    out = LookupTable(table.ids, table.means, table.counts)
    out.ctx_prev = np.full((d, k_ctx), -1, np.int64)
    out.ctx_ids = np.full((d, k_ctx), -1, np.int64)
    out.ctx_means = np.zeros((d, k_ctx), np.float64)
    out.ctx_counts = np.zeros((d, k_ctx), np.int64)
    r, c = n[sel], rank[sel]
    out.ctx_prev[r, c], out.ctx_ids[r, c] = prev[sel], tok[sel]
    out.ctx_means[r, c], out.ctx_counts[r, c] = value[sel], count[sel]
    return out


def predict(
    table: LookupTable, neuron: np.ndarray, token: np.ndarray, prev: np.ndarray
) -> np.ndarray:
    """Simulated activations of flat ``(neuron, token, previous token)`` triples (step 5)."""
    pred = backoff(table, neuron, token)
    if not (table.ctx_ids >= 0).any():
        return pred
    n_i, j_i = np.nonzero(table.ctx_ids >= 0)
    v, vp = _bases(table, token, prev)
    key = np.where(token >= 0, (neuron * vp + prev + 1) * v + token, -1)
    hit = _join(key, (n_i * vp + table.ctx_prev[n_i, j_i] + 1) * v + table.ctx_ids[n_i, j_i])
    return np.where(hit >= 0, table.ctx_means[n_i, j_i][hit.clip(0)], pred)


def _bases(table: LookupTable, tokens: np.ndarray, prev: np.ndarray) -> tuple[int, int]:
    """Bases of the bigram keys ``(prev + 1) * v + token``: ``v`` above every token id, ``vp``
    above every ``prev + 1`` (so -1, none, is 0)."""
    top = max(
        int(table.ctx_ids.max(initial=0)),
        int(table.ctx_prev.max(initial=0)),
        int(tokens.max(initial=0)),
        int(prev.max(initial=0)),
    )
    return top + 1, top + 2


def shifted(tokens: np.ndarray) -> np.ndarray:
    """The previous token of each token of a sequence (``[n]`` or rows ``[d, n]``): -1 first."""
    prev = np.full(tokens.shape, -1, np.int64)
    prev[..., 1:] = tokens[..., :-1]
    return prev


def simulate(table: LookupTable, tokens: np.ndarray, prev: np.ndarray | None = None) -> np.ndarray:
    """Simulated activations ``[d, n]`` of token ids ``tokens`` (``[n]`` shared, or ``[d, n]``):
    the context's mean, else the listed token's mean, else 0 (module doc, step 5).

    ``prev`` (same shape) holds each token's previous token (-1: none); without it ``tokens``
    is read as one sequence (per row for ``[d, n]``), each token following the one before.
    """
    tokens = np.asarray(tokens, np.int64)
    prev = shifted(tokens) if prev is None else np.asarray(prev, np.int64)
    pred = _unigrams(table, tokens)
    if table.ctx_ids.shape[1] == 0 or not (table.ctx_ids >= 0).any():
        return pred
    return _overlay(pred, table, tokens, prev)


def _overlay(
    pred: np.ndarray, table: LookupTable, tokens: np.ndarray, prev: np.ndarray
) -> np.ndarray:
    """Write each context's mean into ``pred [d, n]`` where its bigram occurs: the bigrams of
    the tokens are sorted once and every context entry finds its occurrences by bisection."""
    d, n = pred.shape
    n_i, j_i = np.nonzero(table.ctx_ids >= 0)
    v, vp = _bases(table, tokens, prev)
    ent = (table.ctx_prev[n_i, j_i] + 1) * v + table.ctx_ids[n_i, j_i]
    pos_key = (prev + 1) * v + tokens
    if tokens.ndim == 2:  # per-row tokens: the row is part of the key
        pos_key = np.arange(d)[:, None] * (vp * v) + pos_key
        ent = n_i * (vp * v) + ent
    pos_key = np.where(tokens >= 0, pos_key, -1)  # past a window's end: no context
    flat = pos_key.reshape(-1)
    order = np.argsort(flat, kind="stable")
    lo = np.searchsorted(flat[order], ent, side="left")
    hi = np.searchsorted(flat[order], ent, side="right")
    cnt = hi - lo
    e = np.repeat(np.arange(len(ent)), cnt)
    within = np.arange(len(e)) - np.repeat(np.cumsum(cnt) - cnt, cnt)
    at = order[lo[e] + within]
    col = at % n if tokens.ndim == 2 else at
    pred[n_i[e], col] = table.ctx_means[n_i[e], j_i[e]]  # pred is this call's own array
    return pred


def _unigrams(table: LookupTable, tokens: np.ndarray) -> np.ndarray:
    """Step 5 without contexts: the listed token's mean, else 0."""
    d = table.ids.shape[0]
    if tokens.ndim == 1:  # shared tokens: one dense [d, unique tokens] table, then a gather
        uniq, inv = np.unique(tokens, return_inverse=True)
        at = np.searchsorted(uniq, table.ids).clip(0, max(0, len(uniq) - 1))
        hit = (uniq[at] == table.ids) & (table.ids >= 0) if len(uniq) else at < 0
        dense = np.zeros((d, len(uniq)), np.float64)
        rows = np.broadcast_to(np.arange(d)[:, None], at.shape)
        dense[rows[hit], at[hit]] = table.means[hit]
        return dense[:, inv]
    # per-row tokens: join the keys row * v + token with the table's (sorted once)
    n_i, j_i = np.nonzero(table.ids >= 0)
    if len(n_i) == 0:
        return np.zeros(tokens.shape, np.float64)
    v = int(max(table.ids.max(), tokens.max(initial=0))) + 1
    keys = n_i * v + table.ids[n_i, j_i]
    order = np.argsort(keys, kind="stable")
    keys, means = keys[order], table.means[n_i, j_i][order]
    want = np.arange(d)[:, None] * v + tokens
    at = np.searchsorted(keys, want).clip(0, len(keys) - 1)
    return np.where((keys[at] == want) & (tokens >= 0), means[at], 0.0)


def _q(token: str) -> str:
    """A token quoted as the issue shows it: SentencePiece's ``▁`` read as the space it is."""
    return json.dumps(token.replace(SPIECE_SPACE, " "), ensure_ascii=False)


def render(
    side: str,
    tokens: list[str],
    means: list[float],
    counts: list[int],
    promotes: list[str],
    contexts: list[tuple[str, str, float, int]] | None = None,
) -> str:
    """The one-line explanation: ``fires on " Texas" (9.1, 14×), ... · in: " of<< Texas>>"
    (11, 6×) · promotes (write scores) " Austin", ...``; on the negative side the means are
    shown as activations (negative). ``contexts``: ``(previous token, token, mean, count)``.
    The records keep the tokenizer's own pieces (``"▁Texas"``); the line shows ``▁`` as a
    space."""
    sign = 1.0 if side == "positive" else -1.0
    verb = "fires on" if side == "positive" else "goes negative on"
    named = ", ".join(
        f"{_q(t)} ({sign * m:.3g}, {c}×)"
        for t, m, c in zip(tokens[:SHOWN], means[:SHOWN], counts[:SHOWN], strict=False)
    )
    text = f"{verb} {named}"
    if contexts:
        text += " · in: " + ", ".join(
            f"{_q(p + '<<' + t + '>>')} ({sign * m:.3g}, {c}×)" for p, t, m, c in contexts[:SHOWN]
        )
    if promotes:
        text += " · promotes (write scores) " + ", ".join(_q(t) for t in promotes[:SHOWN])
    return text
