"""The streaming reduction of one layer's ``hook_post``, on the model's device, and its ``merge``.

Per layer the state holds, for every neuron (``[d]`` unless noted):

1. ``n``: tokens seen (the same for every neuron of the layer); ``n_nonfinite``: how many of them
   were NaN or +-inf for this neuron (left out of the sums; the reader then reports NaN mean,
   variance, skewness and kurtosis, and the count).
2. ``sum``, ``sumsq``, ``sum3``, ``sum4``: exact totals of ``x`` .. ``x^4`` over the finite
   values, as integer digits (:mod:`.exact`: each batch's float64 sums are taken about a pivot
   near the batch's values and expanded exactly, so an offset far from zero costs no precision).
   Their range holds every finite float32, so no value is out of range.
3. ``min``, ``max`` (in the lists' key order, so -0.0 < +0.0; NaN once a value was NaN, +-inf
   when one was infinite); ``n_pos`` (count ``x > 0``) and ``n_thr`` (count ``x > threshold``).
4. ``hist [d, n_bins]``: exact counts over half-octave bins read off the float bits
   (:mod:`.bins`), fixed before the first token (NaN and +-inf fall in the outer bins).
5. Top-k and bottom-k examples (:mod:`.ranking`): order key, token ``g = window * ctx_len +
   position`` and the neuron's activation on every token of the example's window. Once a
   neuron's list is full, only the batch's activations at or beyond its k-th value are ranked.
   NaN sorts above +inf (a NaN can be a top example).
6. Interval samples: per (neuron, bin) the ``r`` tokens with the lowest priority, a hash of the
   token salted with (layer, neuron) (:mod:`.priority`), so each neuron samples independently.
   ``salt [d]`` holds the layer's salts (not saved: a function of the seed and the layer).

Every part is a sum, a min/max or an exact selection, so :func:`merge` of two partial states is
byte-identical to the state of the concatenated stream. Full activations never leave the device.
"""

from __future__ import annotations

import functools
import logging
import threading
from dataclasses import dataclass

import numpy as np
import torch

from . import bins
from .exact import LAYOUT, PIVOT_BITS, normalize, pivot, power_digits
from .priority import neuron_salts, salted_priority, token_hash
from .ranking import (
    BOTTOM_EMPTY,
    INT64_MAX,
    TOP_EMPTY,
    batch_extremes,
    column_extreme,
    key_extreme,
    key_value,
    merge_ranked,
    merge_reservoirs,
    order_key,
    rank_union,
    refine_candidates,
    reservoir_insert,
)

log = logging.getLogger(__name__)

CHUNK_ENTRIES = 2**22  # (token, neuron) entries offered to the reservoirs at once
CAND_LIMIT = 8  # rank only candidates when fewer than CAND_LIMIT * top_k per neuron on average
EXAMPLE_DTYPES = {"fp16": torch.float16, "fp32": torch.float32}
SIDES = {"top": True, "bot": False}  # side name → largest
SUMS = ("sum", "sumsq", "sum3", "sum4")  # exact sums of x, x^2, x^3, x^4


@dataclass(frozen=True)
class ReduceParams:
    """What a layer reduction keeps (fixed for a whole atlas).

    Attributes:
        d_mlp: neurons per layer.
        ctx_len: window length (BOS included); example activations are ``[ctx_len]``.
        top_k: examples kept at each end (top-k and bottom-k).
        samples: interval samples kept per (neuron, histogram bin).
        threshold: ``n_thr`` counts activations strictly above it.
        seed: seeds the sampling priorities.
        example_dtype: ``fp16`` or ``fp32`` for the example windows' activations.
        hist_exp: histogram range ``(lo_exp, hi_exp)``: half-octaves from ``2^lo`` to ``2^hi``.
    """

    d_mlp: int
    ctx_len: int
    top_k: int
    samples: int
    threshold: float
    seed: int
    example_dtype: str = "fp16"
    hist_exp: tuple[int, int] = (bins.LO_EXP, bins.HI_EXP)

    @property
    def n_bins(self) -> int:
        return bins.n_bins(*self.hist_exp)


@dataclass
class BatchTokens:
    """The tokens of one batch that enter the statistics (BOS excluded unless asked).

    Rows of the batch are sorted by window index, so ``acts[valid]`` lists tokens in
    ``(window, position)`` order, the order ``g`` follows.
    """

    valid: torch.Tensor  # [B, T] bool
    real: torch.Tensor  # [B, T] float32, 1 on the window's tokens, 0 on padding
    row: torch.Tensor  # [N] batch row of each kept token
    pos: torch.Tensor  # [N] position of each kept token in its row
    g: torch.Tensor  # [N] window * ctx_len + position
    prio: torch.Tensor  # [N] token hash (salted per neuron into priorities, :mod:`.priority`)
    prio_order: torch.Tensor  # [N] argsort of prio: the kernel's token order; [0] gives pivots


def batch_tokens(
    windows: np.ndarray,
    lengths: np.ndarray,
    ctx_len: int,
    include_bos: bool,
    seed: int,
    device: str,
) -> BatchTokens:
    """:class:`BatchTokens` for windows ``[B]`` (ascending) of ``lengths [B]``."""
    width = int(lengths.max())
    pos = np.arange(width)[None, :]
    real = pos < lengths[:, None]
    valid = real & (pos >= (0 if include_bos else 1))
    r, c = np.nonzero(valid)
    g = windows.astype(np.int64)[r] * ctx_len + c
    prio = token_hash(g, seed)

    def t(a: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(a)).to(device)

    return BatchTokens(
        valid=t(valid),
        real=t(real.astype(np.float32)),
        row=t(r.astype(np.int64)),
        pos=t(c.astype(np.int64)),
        g=t(g),
        prio=t(prio),
        prio_order=t(np.argsort(prio, kind="stable")),
    )


def new_state(p: ReduceParams, device: str, layer: int = 0) -> dict[str, torch.Tensor]:
    """The empty state of layer ``layer`` (the identity of :func:`merge`); the layer salts its
    neurons' sampling priorities."""
    d, k, nb, r = p.d_mlp, p.top_k, p.n_bins, p.samples

    def z(*shape: int, dtype: torch.dtype = torch.int64, fill: float = 0) -> torch.Tensor:
        return torch.full(shape, fill, dtype=dtype, device=device)

    # "n" stays on the host wherever the state lives: reading it never waits for a GPU.
    st = {"n": torch.zeros(1, dtype=torch.int64), "n_pos": z(d), "n_thr": z(d)}
    st["n_nonfinite"] = z(d)
    st.update({name: z(d, LAYOUT[i + 1][0]) for i, name in enumerate(SUMS)})
    st["salt"] = torch.from_numpy(neuron_salts(p.seed, layer, d)).to(device)
    st["min"] = z(d, dtype=torch.float32, fill=float("inf"))
    st["max"] = z(d, dtype=torch.float32, fill=float("-inf"))
    st["hist"] = z(d, nb)
    for side, empty in (("top", TOP_EMPTY), ("bot", BOTTOM_EMPTY)):
        st[f"{side}_key"] = z(d, k, fill=empty)
        st[f"{side}_g"] = z(d, k, fill=-1)
        st[f"{side}_acts"] = z(d, k, p.ctx_len, dtype=EXAMPLE_DTYPES[p.example_dtype])
    st["samp_h"] = z(d * nb, r, fill=INT64_MAX)
    st["samp_g"] = z(d * nb, r, fill=-1)
    st["samp_v"] = z(d * nb, r, dtype=torch.float32)
    return st


@torch.no_grad()
def update(
    st: dict[str, torch.Tensor],
    p: ReduceParams,
    acts: torch.Tensor,
    bt: BatchTokens,
    dense: bool | None = None,
) -> None:
    """Fold one batch ``acts [B, T, d]`` of one layer into ``st`` (in place).

    ``dense`` (default: on any device but a CPU) ranks the top-k and bottom-k lists of every
    neuron with fixed shapes instead of compacting the candidates first: more arithmetic, no
    host synchronisation (see :func:`_extremes_dense`). The state is the same bytes either way.
    """
    # Integer indices, not the boolean mask: the same rows in the same order, and no host sync
    # (a mask's nonzero) on a GPU.
    x = acts[bt.row, bt.pos].float()  # [N, d]
    if x.shape[0] == 0:
        return
    full = int(st["n"][0]) >= p.top_k  # every list holds k examples ("n" lives on the host)
    st["n"] += x.shape[0]
    c = pivot_torch(x.index_select(0, bt.prio_order[:1])[0])
    xd = x.double()
    fin = torch.isfinite(xd)
    xd = torch.where(fin, xd - c, 0.0)  # exact: float32 minus an 8-bit pivot
    x2 = xd * xd
    sums = [fin.sum(0).double(), xd.sum(0), x2.sum(0), (x2 * xd).sum(0), (x2 * x2).sum(0)]
    st["n_nonfinite"] += (~fin).sum(0)
    add_sums(st, c, sums)
    del xd, x2, fin
    st["min"] = key_extreme(st["min"], column_extreme(x, False), False)
    st["max"] = key_extreme(st["max"], column_extreme(x, True), True)
    st["n_pos"] += (x > 0).sum(0, dtype=torch.int32)
    st["n_thr"] += (x > p.threshold).sum(0, dtype=torch.int32)
    table = _block_table(p.hist_exp, x.device)
    block = (x.view(torch.int32) >> bins.SHIFT) + 512
    offs = torch.arange(p.d_mlp, device=x.device, dtype=torch.int32) * p.n_bins
    group = table.index_select(0, block.view(-1)).view(x.shape) + offs  # [N, d] (neuron, bin)
    st["hist"] += torch.bincount(group.view(-1), minlength=p.d_mlp * p.n_bins).view(p.d_mlp, -1)
    if dense is None:
        dense = x.device.type != "cpu"
    for side, largest in SIDES.items():
        if dense:
            _extremes_dense(st, p, side, largest, x, acts, bt)
        else:
            _extremes(st, p, side, largest, x, acts, bt, full)
    (_sample_dense if dense else _sample)(st, x, group, bt)


@functools.cache
def _block_table(hist_exp: tuple[int, int], device: torch.device) -> torch.Tensor:
    """:func:`.bins.block_table` on ``device``, uploaded once."""
    return torch.from_numpy(bins.block_table(*hist_exp).copy()).to(device)


def pivot_torch(first: torch.Tensor) -> torch.Tensor:
    """:func:`.exact.pivot` in torch ops on the values' device (no host round trip): float64
    ``c [d]`` of float32 ``first [d]``, rounded to ``PIVOT_BITS`` significant bits (half to even,
    as ``np.round``), 0 where not finite. Every step is exact in float64."""
    v = first.double()
    v = torch.where(torch.isfinite(v), v, 0.0)
    m, e = torch.frexp(v)
    scale = ((e.to(torch.int64) - PIVOT_BITS + 1023) << 52).view(torch.float64)  # 2^(e - 8)
    return torch.round(m * 2.0**PIVOT_BITS) * scale


def _extremes(
    st: dict[str, torch.Tensor],
    p: ReduceParams,
    side: str,
    largest: bool,
    x: torch.Tensor,
    acts: torch.Tensor,
    bt: BatchTokens,
    full: bool,
) -> None:
    """Merge the batch's best tokens of one side into the state's ranked list (``full``: it holds
    ``k`` examples for every neuron)."""
    kth = st[f"{side}_key"][:, -1]
    local = None
    if full:
        keys = order_key(x)  # keys, not values: a NaN k-th value compares false to all
        ti, ni = ((keys >= kth) if largest else (keys <= kth)).nonzero(as_tuple=True)
        if ti.numel() <= CAND_LIMIT * p.top_k * p.d_mlp:
            key, local = refine_candidates(x, ti, ni, p.top_k, largest)
    if local is None:
        key, local = batch_extremes(order_key(x), p.top_k, largest)
    touched = (local >= 0).any(1).nonzero().squeeze(1)  # neurons with a candidate
    if not touched.numel():
        return
    key, local = key.index_select(0, touched), local.index_select(0, touched)
    g = bt.g[local.clamp(min=0)].masked_fill(local < 0, -1)
    names = [f"{side}_key", f"{side}_g", f"{side}_acts"]
    cur_key, cur_g = (st[n].index_select(0, touched) for n in names[:2])
    k = cur_key.shape[1]
    new_key, new_g, sel = rank_union(cur_key, cur_g, key, g, k, largest)
    # Windows: kept state examples are gathered from the state; only the batch's examples that
    # made the list are gathered from the activations.
    cur_acts = st[names[2]].index_select(0, touched)
    win = cur_acts.gather(1, sel.clamp(max=k - 1)[..., None].expand(-1, -1, p.ctx_len))
    i, j = (sel >= k).nonzero(as_tuple=True)
    if i.numel():
        lb = local[i, sel[i, j] - k]  # batch token of each new example (never missing)
        rows = bt.row[lb]
        w = acts[rows, :, touched[i]].float()  # [n, T], +0.0 past the end (not 0 * x)
        w = torch.where(bt.real[rows] > 0, w, 0.0)
        w = torch.nn.functional.pad(w, (0, p.ctx_len - w.shape[1]))
        win[i, j] = w.to(win.dtype)
    for n, t in zip(names, (new_key, new_g, win), strict=True):
        st[n].index_copy_(0, touched, t)


def _extremes_dense(
    st: dict[str, torch.Tensor],
    p: ReduceParams,
    side: str,
    largest: bool,
    x: torch.Tensor,
    acts: torch.Tensor,
    bt: BatchTokens,
) -> None:
    """:func:`_extremes` with fixed shapes (the GPU path: no ``nonzero``, no host sync).

    1. The batch's ``k`` best tokens of every neuron (:func:`.ranking.batch_extremes`), not only
       those at or beyond the list's k-th value: a token below it cannot enter the list, so the
       union ranks to the same list.
    2. Every neuron's list is ranked with them; a neuron without a better token keeps its list
       (already in rank order, the stable sorts return it unchanged).
    3. Every slot's window is taken from the state and, where the slot now holds a batch token,
       from the activations, then chosen by a ``where``: ``[d, k, T]`` gathered instead of only
       the new examples' rows.
    """
    key, local = batch_extremes(order_key(x), p.top_k, largest)  # local >= 0 everywhere
    names = [f"{side}_key", f"{side}_g", f"{side}_acts"]
    k = st[names[0]].shape[1]
    new_key, new_g, sel = rank_union(st[names[0]], st[names[1]], key, bt.g[local], k, largest)
    win = st[names[2]].gather(1, sel.clamp(max=k - 1)[..., None].expand(-1, -1, p.ctx_len))
    lb = local.gather(1, (sel - k).clamp(min=0, max=local.shape[1] - 1))  # [d, k] batch tokens
    rows = bt.row[lb]
    neuron = torch.arange(p.d_mlp, device=x.device)[:, None].expand_as(rows)
    w = acts[rows, :, neuron].float()  # [d, k, T], +0.0 past the end (not 0 * x)
    w = torch.where(bt.real[rows] > 0, w, 0.0)
    w = torch.nn.functional.pad(w, (0, p.ctx_len - w.shape[2]))
    win = torch.where((sel >= k)[..., None], w.to(win.dtype), win)
    for n, t in zip(names, (new_key, new_g, win), strict=True):
        st[n].copy_(t)


def _sample(
    st: dict[str, torch.Tensor], x: torch.Tensor, group: torch.Tensor, bt: BatchTokens
) -> None:
    """Offer the batch's tokens to the reservoirs, in chunks of tokens.

    Each (token, neuron) has its own priority (the token's hash salted by the neuron). Only
    entries below their reservoir's ``r``-th priority are candidates; they are inserted in
    ascending priority. Once reservoirs are full, few entries pass.
    """
    res = {"h": st["samp_h"], "g": st["samp_g"], "v": st["samp_v"]}
    n, d = x.shape
    step = max(1, CHUNK_ENTRIES // d)  # bounds the [tokens, d] int64 temporaries
    for start in range(0, n, step):
        rows = slice(start, start + step)
        prio = torch_salted(bt.prio[rows, None], st["salt"][None, :])  # [c, d]
        grp = group[rows]
        thr = res["h"][:, -1].index_select(0, grp.reshape(-1)).view(grp.shape)
        ti, ni = (prio < thr).nonzero(as_tuple=True)
        if not ti.numel():
            continue
        pr = prio[ti, ni]
        o = torch.argsort(pr)  # within a (neuron, bin) priorities are distinct
        ti, ni, pr = ti[o], ni[o], pr[o]
        gi = grp[ti, ni].long()
        reservoir_insert(res, gi, pr, bt.g[rows][ti], x[rows][ti, ni])


def _sample_dense(
    st: dict[str, torch.Tensor], x: torch.Tensor, group: torch.Tensor, bt: BatchTokens
) -> None:
    """:func:`_sample` with fixed shapes (the GPU path: no ``nonzero``, no host sync).

    Per chunk of tokens, the entries below their reservoir's ``r``-th priority are the same
    candidates; instead of sorting them, ``r`` rounds each take every reservoir's lowest remaining
    candidate (a ``scatter_reduce`` min; priorities within a reservoir are distinct), which builds
    the same ascending rows of at most ``r`` new entries, and every reservoir is merged with its
    row (a reservoir without candidates merges with an empty row and stays as it was).
    """
    res = {"h": st["samp_h"], "g": st["samp_g"], "v": st["samp_v"]}
    n, d = x.shape
    n_groups, r = res["h"].shape
    dev = x.device
    step = max(1, CHUNK_ENTRIES // d)
    for start in range(0, n, step):
        rows = slice(start, start + step)
        prio = torch_salted(bt.prio[rows, None], st["salt"][None, :]).reshape(-1)  # [c * d]
        grp = group[rows].reshape(-1).long()
        left = torch.where(prio < res["h"][:, -1].index_select(0, grp), prio, INT64_MAX)
        g = bt.g[rows, None].expand(-1, d).reshape(-1)
        v = x[rows].reshape(-1)
        new = {
            "h": torch.full((r, n_groups), INT64_MAX, dtype=torch.int64, device=dev),
            "g": torch.full((r, n_groups + 1), -1, dtype=torch.int64, device=dev),
            "v": torch.zeros((r, n_groups + 1), dtype=res["v"].dtype, device=dev),
        }
        for j in range(r):
            low = new["h"][j].scatter_reduce_(0, grp, left, "amin")
            won = (left == low[grp]) & (left < INT64_MAX)  # one entry per reservoir at most
            slot = torch.where(won, grp, n_groups)  # the rest land in a spare column
            new["g"][j].scatter_(0, slot, g)
            new["v"][j].scatter_(0, slot, v)
            left = torch.where(won, INT64_MAX, left)
        rows_new = {k: t[:, :n_groups].T.contiguous() for k, t in new.items()}
        merged = merge_reservoirs(res, rows_new)
        for k in res:
            res[k].copy_(merged[k])


_M1, _M2 = 0xBF58476D1CE4E5B9 - 2**64, 0x94D049BB133111EB - 2**64  # as int64 (wrapping)


def _shr(z: torch.Tensor, s: int) -> torch.Tensor:
    """Logical right shift of int64 bits."""
    return (z >> s) & ((1 << (64 - s)) - 1)


def torch_salted(hashes: torch.Tensor, salts: torch.Tensor) -> torch.Tensor:
    """:func:`.priority.salted_priority` in torch int64 ops (wrapping multiplies)."""
    z = hashes ^ salts
    z = (z ^ _shr(z, 30)) * _M1
    z = (z ^ _shr(z, 27)) * _M2
    z = z ^ _shr(z, 31)
    return z ^ (-(2**63))


def add_sums(st: dict[str, torch.Tensor], c: torch.Tensor, sums: list[torch.Tensor]) -> None:
    """Add one batch's pivot ``c [d]`` and centered float64 sums ``[S_0 .. S_4]`` (``[d]`` each;
    :func:`.exact.power_digits`) to the exact digits."""
    dev = st["sum"].device
    digits = power_digits(c.to(dev), [t.to(dev) for t in sums])
    for name, new in zip(SUMS, digits, strict=True):
        st[name] = normalize(st[name] + new)


@torch.no_grad()
def merge(
    a: dict[str, torch.Tensor], b: dict[str, torch.Tensor], p: ReduceParams
) -> dict[str, torch.Tensor]:
    """The state of ``a``'s tokens followed by ``b``'s (exact, associative, commutative)."""
    if "salt" in a and not torch.equal(a["salt"], b["salt"]):
        raise ValueError("merge of two different layers' states")
    out = {"n": a["n"] + b["n"], "salt": a["salt"]}
    for name in SUMS:
        out[name] = normalize(a[name] + b[name])
    out["min"] = key_extreme(a["min"], b["min"], False)
    out["max"] = key_extreme(a["max"], b["max"], True)
    for name in ("n_pos", "n_thr", "hist", "n_nonfinite"):
        out[name] = a[name] + b[name]
    for side, largest in SIDES.items():
        names = [f"{side}_key", f"{side}_g", f"{side}_acts"]
        got = merge_ranked(
            (a[names[0]], a[names[1]], a[names[2]]),
            (b[names[0]], b[names[1]], b[names[2]]),
            p.top_k,
            largest,
        )
        out.update(zip(names, got, strict=True))
    res = merge_reservoirs(
        {"h": a["samp_h"], "g": a["samp_g"], "v": a["samp_v"]},
        {"h": b["samp_h"], "g": b["samp_g"], "v": b["samp_v"]},
    )
    out.update(samp_h=res["h"], samp_g=res["g"], samp_v=res["v"])
    return out


def to_disk(st: dict[str, torch.Tensor], p: ReduceParams) -> dict[str, torch.Tensor]:
    """CPU tensors to save: order keys become float32 values (NaN where empty), reservoir
    priorities are dropped (they are a function of ``g``), reservoirs become ``[d, bins, r]``."""
    out = {n: t for n, t in st.items() if not n.endswith("_key") and n not in ("samp_h", "salt")}
    for side in SIDES:
        empty = st[f"{side}_g"] < 0
        out[f"{side}_val"] = torch.where(empty, float("nan"), key_value(st[f"{side}_key"]))
    shape = (p.d_mlp, p.n_bins, p.samples)
    out["samp_g"] = st["samp_g"].reshape(shape)
    out["samp_v"] = st["samp_v"].reshape(shape)
    return {n: t.detach().to("cpu").contiguous() for n, t in sorted(out.items())}


def from_disk(
    tensors: dict[str, torch.Tensor], p: ReduceParams, device: str, layer: int = 0
) -> dict[str, torch.Tensor]:
    """The inverse of :func:`to_disk` for layer ``layer``, on ``device``."""
    st = {n: t for n, t in tensors.items() if not n.endswith("_val")}
    for side, empty in (("top", TOP_EMPTY), ("bot", BOTTOM_EMPTY)):
        g = tensors[f"{side}_g"]
        st[f"{side}_key"] = torch.where(g < 0, empty, order_key(tensors[f"{side}_val"]))
    g = tensors["samp_g"].reshape(-1, p.samples)
    salt = neuron_salts(p.seed, layer, p.d_mlp)
    st["salt"] = torch.from_numpy(salt)
    row_salt = np.repeat(salt, p.n_bins)[:, None]  # rows are (neuron, bin), neuron-major
    prio = torch.from_numpy(salted_priority(token_hash(g.numpy(), p.seed), row_salt))
    st["samp_h"] = torch.where(g < 0, INT64_MAX, prio)
    st["samp_g"] = g
    st["samp_v"] = tensors["samp_v"].reshape(-1, p.samples)
    return {n: t if n == "n" else t.to(device) for n, t in st.items()}


def kernel_available() -> bool:
    """True when the compiled CPU pass (numba) imports; set ``NEURON_SIGNATURES_NO_KERNEL=1`` to
    use the torch ops instead."""
    import os

    if os.environ.get("NEURON_SIGNATURES_NO_KERNEL"):
        return False
    try:
        from . import kernel  # noqa: F401
    except ImportError:
        return False
    return True


@functools.cache
def warm_kernel(dtype: str = "fp32") -> threading.Thread:
    """Load the compiled CPU pass for a model of ``dtype`` (``bf16`` activations are read as
    they are, others as float32: :func:`raw_bits`) on a background thread, once per process and
    dtype, and return it.

    A process's first call of :func:`update_kernel` loads its machine code from numba's cache
    (or compiles it): about 0.5 s that the first batch waited for. A tiny batch of the same
    types, folded while the corpus is read and the model loads, loads the same specialisations;
    a call that comes before it is done waits for numba's lock, not for a second load.
    """

    def fold_tiny() -> None:
        p = ReduceParams(d_mlp=2, ctx_len=3, top_k=2, samples=2, threshold=0.0, seed=0)
        bt = batch_tokens(np.array([0]), np.array([3]), p.ctx_len, False, p.seed, "cpu")
        acts = torch.ones(1, 3, 2, dtype=torch.bfloat16 if dtype == "bf16" else torch.float32)
        try:
            update_kernel(new_state(p, "cpu"), p, acts, bt, threads=1)
        except Exception:  # the first real batch raises it where it can be reported
            log.debug("warming the compiled pass failed", exc_info=True)

    thread = threading.Thread(target=fold_tiny, name="atlas-warm-kernel", daemon=True)
    thread.start()
    return thread


def raw_bits(acts: torch.Tensor) -> np.ndarray:
    """The bits the compiled pass reads (:func:`.kernel.run`): a bf16 batch as it is (int16),
    anything else as float32 (int32). The values are the same either way (bf16 to float32 is
    exact); a bf16 batch just skips a cast to twice its bytes."""
    if acts.dtype == torch.bfloat16:
        return acts.contiguous().view(torch.int16).numpy()
    return acts.float().contiguous().view(torch.int32).numpy()


@torch.no_grad()
def update_kernel(
    st: dict[str, torch.Tensor],
    p: ReduceParams,
    acts: torch.Tensor,
    bt: BatchTokens,
    threads: int | None = None,
) -> None:
    """:func:`update` on a CPU through the compiled pass of :mod:`.kernel` (same state), its
    neurons split over ``threads`` (default: torch's intra-op thread count)."""
    from . import kernel

    if bt.row.numel() == 0:
        return
    a = raw_bits(acts)
    views = {n: st[n].numpy() for n in (*kernel.STATE, "hist")}
    for side in SIDES:
        views[f"{side}_acts"] = st[f"{side}_acts"].view(torch.int16).numpy()
    rows = bt.row.numpy()
    order = bt.prio_order.numpy()
    t0 = int(order[0])
    c = pivot(acts[bt.row[t0], bt.pos[t0]].float().numpy())
    out = kernel.run(
        threads or torch.get_num_threads(),
        a,
        rows,
        bt.pos.numpy(),
        order,
        bt.g.numpy(),
        bt.prio.numpy(),
        p.threshold,
        p.hist_exp,
        views,
        c,
        bt.real.sum(1).to(torch.int64).numpy(),
        EXAMPLE_DTYPES[p.example_dtype],
    )
    st["n"] += rows.size
    nonfinite = out.pop("nonfinite")
    st["n_nonfinite"] += torch.from_numpy(nonfinite)
    s0 = (rows.size - nonfinite).astype(np.float64)
    sums = np.stack([s0, *(out[f"s{i}"] for i in range(1, 5))])
    d1, d2, d3, d4 = (st[name].numpy() for name in SUMS)  # in place: the state's own digits
    kernel.add_power_sums(c, sums, d1, d2, d3, d4, np.array([LAYOUT[k][1] for k in (1, 2, 3, 4)]))
