"""The held-out split of an atlas neuron: what the explainer sees and what scores it.

The anchors (OpenAI's automated-interpretability, delphi) score an explanation only on data the
explainer never saw. Per neuron of a layer, read in bulk from the atlas's layer file:

1. **Train** (the explainer's input): the top examples of even rank (0, 2, 4, ...: half of them,
   interleaved by rank so both halves span the range), the bottom examples of the same ranks
   (whole windows with every token's activation) and every interval-reservoir sample (single
   tokens: the atlas's interval samples are drawn from these reservoirs).
2. **Held-out** (the scorer's input): the top examples of odd rank (bottom examples of odd rank
   for the negative side), less any whose window is a train window, and the **random windows**
   of the score-time forward (:mod:`.forward`), less the neuron's train and held-out example
   windows. Reservoir tokens that fall in a held-out window are masked out token by token.
3. :func:`check_disjoint` asserts, per neuron, that no held-out token is a train token.
4. **Validation slice** (inside train, to choose the explainer's parameters and contexts, never
   on held-out data): train examples alternate by rank between a *fit* fold (atlas ranks 0, 4,
   8, ...) and a *validation* fold (ranks 2, 6, 10, ...), reservoir tokens by their column
   (even: fit, odd: validation). :func:`validation` picks a side's validation tokens: the
   side's examples (top for positive, bottom for negative) and the reservoir tokens.

Position 0 (BOS) counts only when the atlas counted it (``include_bos``), as in the atlas.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..atlas import Atlas
from ..atlas import store as atlas_store
from ..errors import RunFormatError


@dataclass
class Windows:
    """The atlas's windows: ``tokens [W, ctx_len]`` (-1 past the end), ``lengths [W]``, and the
    first counted position (0 with ``include_bos``, else 1)."""

    tokens: np.ndarray
    lengths: np.ndarray
    start: int

    @property
    def ctx_len(self) -> int:
        return int(self.tokens.shape[1])


def read_windows(atlas: Atlas) -> Windows:
    """Every window's token ids; :class:`RunFormatError` when the atlas has none."""
    path = atlas.root / atlas_store.WINDOWS
    if not path.is_file():
        raise RunFormatError(
            f"atlas {atlas.root} has no {atlas_store.WINDOWS}: rebuild it with "
            f"`neuron-signatures atlas --out_dir {atlas.root} --overwrite` and the same flags"
        )
    with atlas_store.open_numpy(path) as f:
        tokens = f.get_tensor("tokens").astype(np.int64)
        lengths = f.get_tensor("length").astype(np.int64)
    start = 0 if atlas.manifest["params"].get("include_bos") else 1
    return Windows(tokens=tokens, lengths=lengths, start=start)


@dataclass
class LayerArrays:
    """One layer's examples and reservoirs, as the atlas stores them (``d = d_mlp``).

    ``top_g / bot_g [d, k]``: global token ``window * ctx_len + position`` of each example (-1:
    empty), ranked; ``top_acts / bot_acts [d, k, ctx_len]``: the window's activations;
    ``samp_g / samp_v [d, S]``: reservoir tokens and values; ``write_*_id / _val [d, kw]``: the
    write-score tokens (empty ``[d, 0]`` when the atlas has none).
    """

    layer: int
    top_g: np.ndarray
    top_acts: np.ndarray
    bot_g: np.ndarray
    bot_acts: np.ndarray
    samp_g: np.ndarray
    samp_v: np.ndarray
    min: np.ndarray
    max: np.ndarray
    write_pos_id: np.ndarray
    write_neg_id: np.ndarray
    hist: np.ndarray | None = None  # [d, B] tokens per histogram bin; samp_* hold r per bin

    @property
    def d(self) -> int:
        return int(self.top_g.shape[0])


def read_layer(atlas: Atlas, layer: int) -> LayerArrays:
    """The arrays of ``layer`` in one read (the bulk form of ``Atlas.neuron``'s rows)."""
    with atlas_store.open_numpy(atlas_store.layer_file(atlas.root, layer)) as f:
        t = {k: f.get_tensor(k) for k in ("top_g", "top_acts", "bot_g", "bot_acts", "min", "max")}
        t["samp_g"] = f.get_tensor("samp_g").reshape(len(t["min"]), -1)
        t["samp_v"] = f.get_tensor("samp_v").reshape(len(t["min"]), -1)
        t["hist"] = f.get_tensor("hist").astype(np.float64) if "hist" in f.keys() else None  # noqa: SIM118
    d = len(t["min"])
    ws = {"pos": np.zeros((d, 0), np.int64), "neg": np.zeros((d, 0), np.int64)}
    path = atlas.root / atlas_store.WRITE_SCORES
    if path.is_file():
        with atlas_store.open_numpy(path) as f:
            for side in ws:
                key = f"layer_{layer:03d}.{side}_id"
                if key in f.keys():  # noqa: SIM118
                    ws[side] = f.get_tensor(key).astype(np.int64)
    return LayerArrays(
        layer=layer,
        top_g=t["top_g"].astype(np.int64),
        top_acts=t["top_acts"].astype(np.float32),
        bot_g=t["bot_g"].astype(np.int64),
        bot_acts=t["bot_acts"].astype(np.float32),
        samp_g=t["samp_g"].astype(np.int64),
        samp_v=t["samp_v"].astype(np.float32),
        min=t["min"].astype(np.float64),
        max=t["max"].astype(np.float64),
        write_pos_id=ws["pos"],
        write_neg_id=ws["neg"],
        hist=t["hist"],
    )


TOP, BOTTOM, RESERVOIR = 0, 1, 2  # TrainTokens.src


@dataclass
class TrainTokens:
    """Every train token of a layer, flat and deduplicated by ``(neuron, g)``.

    ``prev``: the token before it in its window (-1 at position 0); ``src``: :data:`TOP`,
    :data:`BOTTOM` or :data:`RESERVOIR`; ``fold``: 0 fit, 1 validation (module doc, step 4).
    """

    neuron: np.ndarray
    g: np.ndarray
    token: np.ndarray
    value: np.ndarray  # float64
    prev: np.ndarray
    src: np.ndarray
    fold: np.ndarray
    weight: np.ndarray  # float64: 1 for an example token, see reservoir_weights

    def subset(self, mask: np.ndarray) -> TrainTokens:
        return TrainTokens(*(getattr(self, f)[mask] for f in self.__dataclass_fields__))


def prev_tokens(win: Windows, g: np.ndarray) -> np.ndarray:
    """The token before each global token ``g`` in its window (-1 at position 0); any shape."""
    flat = win.tokens.reshape(-1)
    g = np.asarray(g, np.int64)
    return np.where(g % win.ctx_len > 0, flat[np.maximum(g - 1, 0)], -1)


def window_tokens(
    g: np.ndarray, acts: np.ndarray, win: Windows
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``[d, k]`` examples → ``(g, token, value, valid)`` of their windows' tokens, each
    ``[d, k, ctx_len]`` (valid: a real, counted position of a non-empty example)."""
    ctx = win.ctx_len
    w = np.where(g >= 0, g // ctx, 0)
    pos = np.arange(ctx)
    valid = (g >= 0)[..., None] & (pos >= win.start) & (pos < win.lengths[w][..., None])
    tok_g = w[..., None] * ctx + pos
    token = win.tokens[w][..., :ctx]
    return tok_g, token, acts.astype(np.float64), valid


def train_tokens(arr: LayerArrays, win: Windows) -> TrainTokens:
    """The train split's tokens (module doc, step 1), each once: an example whose window is an
    earlier example's, and a reservoir token inside a train window, are dropped (a reservoir
    holds each token at most once: a token has one value, so one bin)."""
    d, ctx = arr.d, win.ctx_len
    top_g, bot_g = arr.top_g[:, 0::2], arr.bot_g[:, 0::2]
    g = np.concatenate([top_g, bot_g], axis=1)
    acts = np.concatenate([arr.top_acts[:, 0::2], arr.bot_acts[:, 0::2]], axis=1)
    src = np.repeat([TOP, BOTTOM], [top_g.shape[1], bot_g.shape[1]])
    fold = np.concatenate([np.arange(top_g.shape[1]) % 2, np.arange(bot_g.shape[1]) % 2])
    w = np.where(g >= 0, g // ctx, -1)
    k = w.shape[1]
    earlier = np.tril(np.ones((k, k), bool), -1)
    dup = ((w[:, :, None] == w[:, None, :]) & earlier[None]).any(-1)
    tg, tok, val, ok = window_tokens(np.where(dup, -1, g), acts, win)
    n = np.broadcast_to(np.arange(d)[:, None, None], tg.shape)
    samp_w = np.where(arr.samp_g >= 0, arr.samp_g // ctx, -2)
    inside = (samp_w[:, :, None] == w[:, None, :]).any(-1)
    keep = (arr.samp_g >= 0) & ~inside
    sg = arr.samp_g[keep]
    ns = np.broadcast_to(np.arange(d)[:, None], arr.samp_g.shape)[keep]
    s_fold_all = np.broadcast_to(np.arange(arr.samp_g.shape[1]) % 2, arr.samp_g.shape)
    s_fold = s_fold_all[keep]
    ex_col = np.broadcast_to(np.arange(k)[None, :, None], tg.shape)[ok]
    all_g = np.concatenate([tg[ok], sg])
    return TrainTokens(
        neuron=np.concatenate([n[ok], ns]),
        g=all_g,
        token=np.concatenate([tok[ok], win.tokens[sg // ctx, sg % ctx]]),
        value=np.concatenate([val[ok], arr.samp_v[keep].astype(np.float64)]),
        prev=prev_tokens(win, all_g),
        src=np.concatenate([src[ex_col], np.full(len(sg), RESERVOIR)]).astype(np.int8),
        fold=np.concatenate([fold[ex_col], s_fold]).astype(np.int8),
        weight=np.concatenate([np.ones(int(ok.sum())), reservoir_weights(arr, keep, s_fold_all)]),
    )


def reservoir_weights(arr: LayerArrays, keep: np.ndarray, fold: np.ndarray) -> np.ndarray:
    """The tokens each kept reservoir sample stands for within its fold: its bin's count over
    the fold's kept samples of that bin (reservoirs are a stratified sample, one per histogram
    bin; weighted, they estimate the neuron's whole token distribution). Flat, as
    ``arr.samp_g[keep]``; 1 where the atlas has no histogram."""
    d, cols = arr.samp_g.shape
    if arr.hist is None or cols % arr.hist.shape[1]:
        return np.ones(int(keep.sum()))
    n_bins = arr.hist.shape[1]
    b = np.arange(cols) // (cols // n_bins)
    cell = (np.arange(d)[:, None] * n_bins + b) * 2 + fold  # [d, cols]: (neuron, bin, fold)
    n_kept = np.bincount(cell[keep], minlength=d * n_bins * 2)
    counts = np.broadcast_to(arr.hist[:, b], keep.shape)[keep]
    return counts / np.maximum(n_kept[cell[keep]], 1)


def validation(train: TrainTokens, side: str) -> np.ndarray:
    """``[n]`` mask of the validation tokens of ``side`` (module doc, step 4)."""
    own = TOP if side == "positive" else BOTTOM
    return (train.fold == 1) & ((train.src == own) | (train.src == RESERVOIR))


@dataclass
class HeldOut:
    """One side's held-out data of a layer (module doc, step 2); ``d`` neurons.

    ``ex_*  [d, kh, ctx_len]``: the held-out examples' tokens (``ex_ok`` masks empty, dropped and
    uncounted positions and reservoir tokens); ``ex_windows [d, kh]`` (-1: none or dropped);
    ``rnd_ok [d, T]``: which random tokens score the neuron; ``rnd_excluded [d, nR]``: random
    windows left out for being the neuron's example windows.
    """

    ex_g: np.ndarray
    ex_token: np.ndarray
    ex_value: np.ndarray
    ex_ok: np.ndarray
    ex_windows: np.ndarray
    rnd_ok: np.ndarray
    rnd_excluded: np.ndarray


def held_out(
    arr: LayerArrays, win: Windows, rnd_wins: np.ndarray, rnd_g: np.ndarray, side: str
) -> HeldOut:
    """The held-out split of every neuron of ``arr`` for ``side`` (``"positive"`` / ``"negative"``).

    ``rnd_wins [nR]`` (sorted) and ``rnd_g [T]`` are the random windows and their counted tokens.
    """
    ctx = win.ctx_len
    g_all, acts_all = (arr.top_g, arr.top_acts) if side == "positive" else (arr.bot_g, arr.bot_acts)
    g, acts = g_all[:, 1::2], acts_all[:, 1::2]
    train_w = np.concatenate([arr.top_g[:, 0::2], arr.bot_g[:, 0::2]], axis=1)
    train_w = np.where(train_w >= 0, train_w // ctx, -1)
    ex_w = np.where(g >= 0, g // ctx, -1)
    clash = (ex_w[:, :, None] == train_w[:, None, :]).any(-1)
    # two held-out examples in one window: keep the first only (a window scores once)
    k = ex_w.shape[1]
    earlier = np.tril(np.ones((k, k), bool), -1)
    dup = ((ex_w[:, :, None] == ex_w[:, None, :]) & earlier[None]).any(-1)
    ex_w = np.where(clash | dup | (ex_w < 0), -1, ex_w)
    tg, tok, val, ok = window_tokens(np.where(ex_w >= 0, g, -1), acts, win)
    samp_w = np.where(arr.samp_g >= 0, arr.samp_g // ctx, -2)
    hit = samp_w[:, None, :] == ex_w[:, :, None]  # [d, kh, S]: a reservoir token in the window
    n_i, j_i, s_i = np.nonzero(hit)
    ok[n_i, j_i, arr.samp_g[n_i, s_i] % ctx] = False
    seen = np.concatenate([train_w, ex_w], axis=1)
    excluded = (rnd_wins[None, :, None] == seen[:, None, :]).any(-1)  # [d, nR]
    rnd_index = np.searchsorted(rnd_wins, rnd_g // ctx)
    rnd_ok = ~excluded[:, rnd_index]
    pos_of_g = np.full(win.tokens.size, -1, np.int64)
    pos_of_g[rnd_g] = np.arange(len(rnd_g))
    n_i, s_i = np.nonzero(arr.samp_g >= 0)
    t = pos_of_g[arr.samp_g[n_i, s_i]]
    rnd_ok[n_i[t >= 0], t[t >= 0]] = False
    return HeldOut(tg, tok, val, ok, ex_w, rnd_ok, excluded)


def check_disjoint(train: TrainTokens, ho: HeldOut, rnd_g: np.ndarray) -> None:
    """Raise ``AssertionError`` when any neuron's held-out token is one of its train tokens.

    Walks the train tokens (not the ``d x T`` held-out grid): a train token ``(n, g)`` must be
    masked wherever ``g`` lies in a held-out window of neuron ``n``.
    """
    if len(train.g) == 0:
        return
    ctx = ho.ex_g.shape[-1]
    n_w = int(max(train.g.max(), ho.ex_windows.max(), 0)) // ctx + 1
    d, kh = ho.ex_windows.shape
    ex_key = np.arange(d)[:, None] * n_w + ho.ex_windows  # [d, kh]; -1 windows never match
    flat = np.where(ho.ex_windows >= 0, ex_key, -1).ravel()
    order = np.argsort(flat, kind="stable")
    key = train.neuron * n_w + train.g // ctx
    at = np.searchsorted(flat[order], key).clip(0, len(flat) - 1)
    i = np.flatnonzero(flat[order][at] == key)
    j = order[at[i]] % kh
    if np.any(ho.ex_ok[train.neuron[i], j, train.g[i] % ctx]):
        raise AssertionError("a held-out example token is among the explainer's train tokens")
    at = np.searchsorted(rnd_g, train.g).clip(0, len(rnd_g) - 1)
    inr = rnd_g[at] == train.g
    if np.any(ho.rnd_ok[train.neuron[inr], at[inr]]):
        raise AssertionError("a held-out random token is among the explainer's train tokens")
