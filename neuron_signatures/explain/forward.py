"""The score-time forward: random corpus windows, run once through the atlas's model.

1. Draw windows with a seeded permutation of all the atlas's windows until their counted tokens
   reach ``n_tokens`` (a few thousand); sort them.
2. Feed them in batches through the capture path the atlas uses
   (:func:`neuron_signatures.atlas.run.batch_inputs`: right-padded, with an attention mask;
   :func:`neuron_signatures.models.capture_hook_post`: the body stops after the last wanted
   layer). The windows start with BOS as stored, so every activation equals the atlas's own.
3. Keep every layer's activations of the counted positions (BOS only with ``include_bos``):
   ``[T, d_mlp]`` float32 per layer.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from .split import Windows


@dataclass
class RandomTokens:
    """The random windows ``wins [nR]`` (sorted), their counted tokens ``g / token [T]`` and
    every layer's activations ``acts[layer] [T, d_mlp]``."""

    wins: np.ndarray
    g: np.ndarray
    token: np.ndarray
    acts: dict[int, np.ndarray]


def pick_random_windows(lengths: np.ndarray, n_tokens: int, seed: int) -> np.ndarray:
    """Seeded windows holding at least ``n_tokens`` tokens (all of them if fewer), sorted."""
    rng = np.random.default_rng([seed, 22])
    order = rng.permutation(len(lengths))
    cum = np.cumsum(lengths[order])
    m = min(len(order), int(np.searchsorted(cum, n_tokens)) + 1)
    return np.sort(order[:m])


def counted_tokens(win: Windows, wins: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(row, position)`` of the counted tokens of windows ``wins`` (rows index ``wins``)."""
    pos = np.arange(win.ctx_len)
    ok = (pos >= win.start) & (pos < win.lengths[wins][:, None])
    rows, pos = np.nonzero(ok)
    return rows, pos


def score_time_forward(
    lm: Any, win: Windows, wins: np.ndarray, layers: list[int], batch_size: int = 16
) -> RandomTokens:
    """Activations of every counted token of ``wins`` in ``layers`` (module doc, steps 2-3)."""
    import torch

    from ..atlas.run import batch_inputs
    from ..models import capture_hook_post

    rows, pos = counted_tokens(win, wins)
    out = {layer: np.zeros((len(rows), 0), np.float32) for layer in layers}
    parts: dict[int, list[np.ndarray]] = {layer: [] for layer in layers}
    pad = lm.tokenizer.pad_token_id if lm.tokenizer.pad_token_id is not None else 0
    local = np.arange(len(wins))
    for lo in range(0, len(wins), batch_size):
        b = local[lo : lo + batch_size]
        ids, mask = batch_inputs(win.tokens[wins], win.lengths[wins], b, pad)
        got = capture_hook_post(lm, ids.to(lm.device), mask.to(lm.device), layers)
        sel = (rows >= lo) & (rows < lo + len(b))
        r, p = torch.from_numpy(rows[sel] - lo), torch.from_numpy(pos[sel])
        for layer in layers:
            parts[layer].append(got[layer][r, p].float().cpu().numpy())
        del got
    for layer in layers:
        out[layer] = np.concatenate(parts[layer]) if parts[layer] else out[layer]
    g = wins[rows] * win.ctx_len + pos
    return RandomTokens(wins=wins, g=g, token=win.tokens[wins[rows], pos], acts=out)
