"""The score-time forward: random corpus windows, run once through the atlas's model.

1. Draw windows with a seeded permutation of all the atlas's windows until their counted tokens
   reach ``n_tokens`` (a few thousand); sort them.
2. Feed them in batches through the capture path the atlas uses
   (:func:`neuron_signatures.atlas.run.batch_inputs`: right-padded, with an attention mask;
   :func:`neuron_signatures.models.capture_hook_post`: the body stops after the last wanted
   layer). The windows start with BOS as stored, so every activation equals the atlas's own.
3. Keep every layer's activations of the counted positions (BOS only with ``include_bos``):
   ``[T, d_mlp]`` per layer, gathered on the device in the model's dtype (one ``index_select``
   per layer and batch into a preallocated tensor: a cast to float32 here cost 0.3x a bare
   forward on 2 cores); :meth:`RandomTokens.layer_acts` casts one layer when it is scored.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from .split import Windows


@dataclass
class RandomTokens:
    """The random windows ``wins [nR]`` (sorted), their counted tokens ``g / token [T]`` and
    every layer's activations ``acts[layer] [T, d_mlp]`` (torch, the model's dtype; or numpy)."""

    wins: np.ndarray
    g: np.ndarray
    token: np.ndarray
    acts: dict[int, Any]

    def layer_acts(self, layer: int) -> np.ndarray:
        """``[T, d_mlp]`` float32 numpy activations of ``layer``."""
        a = self.acts[layer]
        if isinstance(a, np.ndarray):
            return a.astype(np.float32, copy=False)
        return np.asarray(a.float().cpu().numpy())


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
    d = int(lm.d_mlp)
    dtype = next(lm.plain_model.parameters()).dtype if lm.plain_model is not None else None
    out = {layer: torch.empty((len(rows), d), dtype=dtype, device=lm.device) for layer in layers}
    pad = lm.tokenizer.pad_token_id if lm.tokenizer.pad_token_id is not None else 0
    local = np.arange(len(wins))
    bounds = np.searchsorted(rows, np.arange(0, len(wins) + batch_size, batch_size))
    for n_b, lo in enumerate(range(0, len(wins), batch_size)):
        b = local[lo : lo + batch_size]
        ids, mask = batch_inputs(win.tokens[wins], win.lengths[wins], b, pad)
        got = capture_hook_post(lm, ids.to(lm.device), mask.to(lm.device), layers)
        t0, t1 = int(bounds[n_b]), int(bounds[n_b + 1])
        flat = torch.from_numpy((rows[t0:t1] - lo) * ids.shape[1] + pos[t0:t1]).to(lm.device)
        for layer in layers:
            x = got[layer].reshape(-1, d)
            torch.index_select(x, 0, flat, out=out[layer][t0:t1])
        del got
    g = wins[rows] * win.ctx_len + pos
    return RandomTokens(wins=wins, g=g, token=win.tokens[wins[rows], pos], acts=out)
