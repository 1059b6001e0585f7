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
4. The simulator is the table itself (OpenAI's simulator predicts an activation per token from
   the explanation; here the prediction is the listed token's train mean, 0 for any other token).
   Pearson correlation ignores the scale, so no calibration is needed (OpenAI's calibrated
   simulator is an affine map, which leaves the correlation unchanged).
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np

from ..tokens import SPIECE_SPACE
from .split import TrainTokens

SIDES = ("positive", "negative")
SHOWN = 3  # tokens named in the rendered explanation


@dataclass
class LookupTable:
    """The explanations of one side of a layer: ``ids / means / counts [d, k]`` (id -1: empty;
    ``means`` are on the side's scale: negated activations for the negative side)."""

    ids: np.ndarray
    means: np.ndarray
    counts: np.ndarray

    @property
    def has(self) -> np.ndarray:
        """``[d]``: the neuron has an explanation on this side."""
        return self.ids[:, 0] >= 0

    def take(self, rows: np.ndarray) -> LookupTable:
        return LookupTable(self.ids[rows], self.means[rows], self.counts[rows])


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


def explain_layer(
    groups: TokenMeans, d: int, side: str, k: int = 8, prior: float = 0.0
) -> LookupTable:
    """The token-lookup explanations of ``d`` neurons for ``side`` (module doc, steps 1-3).

    ``prior`` > 0 ranks tokens by ``sum / (count + prior)`` (a mean shrunk toward 0, so a token
    seen once does not outrank one seen often); the table keeps the plain means.
    """
    means = groups.mean if side == "positive" else -groups.mean
    neuron, token, counts = groups.neuron, groups.token, groups.count
    keep = means > 0
    neuron, token, means, counts = neuron[keep], token[keep], means[keep], counts[keep]
    rank_by = means * counts / (counts + prior)
    order = np.lexsort((token, -counts, -rank_by, neuron))
    neuron, token, means, counts = neuron[order], token[order], means[order], counts[order]
    first = np.searchsorted(neuron, neuron, side="left")
    rank = np.arange(len(neuron)) - first
    sel = rank < k
    out = LookupTable(
        ids=np.full((d, k), -1, np.int64),
        means=np.zeros((d, k), np.float64),
        counts=np.zeros((d, k), np.int64),
    )
    out.ids[neuron[sel], rank[sel]] = token[sel]
    out.means[neuron[sel], rank[sel]] = means[sel]
    out.counts[neuron[sel], rank[sel]] = counts[sel]
    return out


def simulate(table: LookupTable, tokens: np.ndarray) -> np.ndarray:
    """Simulated activations ``[d, n]`` of token ids ``tokens`` (``[n]`` shared, or ``[d, n]``):
    the listed token's mean, else 0 (module doc, step 4)."""
    d, k = table.ids.shape
    if tokens.ndim == 1:  # shared tokens: one dense [d, unique tokens] table, then a gather
        uniq, inv = np.unique(tokens, return_inverse=True)
        at = np.searchsorted(uniq, table.ids).clip(0, max(0, len(uniq) - 1))
        hit = (uniq[at] == table.ids) & (table.ids >= 0) if len(uniq) else at < 0
        dense = np.zeros((d, len(uniq)), np.float64)
        rows = np.broadcast_to(np.arange(d)[:, None], at.shape)
        dense[rows[hit], at[hit]] = table.means[hit]
        return dense[:, inv]
    pred = np.zeros(tokens.shape, np.float64)
    for j in range(k):  # k (~8) vectorised passes, not a loop over tokens or neurons
        pred += np.where(tokens == table.ids[:, j, None], table.means[:, j, None], 0.0)
    return pred


def _q(token: str) -> str:
    """A token quoted as the issue shows it: SentencePiece's ``▁`` read as the space it is."""
    return json.dumps(token.replace(SPIECE_SPACE, " "), ensure_ascii=False)


def render(
    side: str, tokens: list[str], means: list[float], counts: list[int], promotes: list[str]
) -> str:
    """The one-line explanation: ``fires on " Texas" (9.1, 14×), ... · promotes (write scores)
    " Austin", ...``; on the negative side the means are shown as activations (negative). The
    records keep the tokenizer's own pieces (``"▁Texas"``); the line shows ``▁`` as a space."""
    sign = 1.0 if side == "positive" else -1.0
    verb = "fires on" if side == "positive" else "goes negative on"
    named = ", ".join(
        f"{_q(t)} ({sign * m:.3g}, {c}×)"
        for t, m, c in zip(tokens[:SHOWN], means[:SHOWN], counts[:SHOWN], strict=False)
    )
    text = f"{verb} {named}"
    if promotes:
        text += " · promotes (write scores) " + ", ".join(_q(t) for t in promotes[:SHOWN])
    return text
