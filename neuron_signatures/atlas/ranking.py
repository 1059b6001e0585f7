"""Exact, associative selections: top-k / bottom-k with tie-breaks, and hash-ordered reservoirs.

1. Order keys: a float32 activation maps to an int64 whose integer order is the float order
   (``-0.0`` just below ``+0.0``), so ties are exact integer equalities, never float quirks.
2. Top-k of a batch: one ``torch.topk`` on ``key << 32 | tie`` where ``tie`` ranks the batch's
   tokens by ``(window, position)``; the composite is unique, so the result is deterministic.
3. Merging two top-k lists sorts their union by ``(key desc, g asc)`` (``g = window * ctx_len +
   position``) with two stable sorts: the k best of a union are among the k best of each part,
   so ``merge`` of partial results equals the result on the whole stream, whatever the split.
4. Interval samples: each token gets a priority ``hash(seed, g)`` (splitmix64, a bijection of g,
   so no two tokens tie); each (neuron, histogram bin) keeps the ``r`` lowest priorities it saw.
   Bottom-r by a hash is a seeded uniform sample, and bottom-r of a union is bottom-r of the
   parts' bottom-r: associative, like the rest of the atlas.
"""

from __future__ import annotations

from typing import Any

import torch

MASK32 = 0xFFFFFFFF
INT64_MAX = 2**63 - 1
TOP_EMPTY = -(2**62)  # below every order key (keys fit in int32)
BOTTOM_EMPTY = 2**62
_FLIP = 0x7FFFFFFF


def order_key(x: torch.Tensor) -> torch.Tensor:
    """int64 keys of float32 ``x`` whose integer order is the float order."""
    b = x.contiguous().view(torch.int32).to(torch.int64)
    return torch.where(b < 0, b ^ _FLIP, b)


def key_value(key: torch.Tensor) -> torch.Tensor:
    """float32 values of order keys (the inverse of :func:`order_key`; sentinels give junk)."""
    k = key.clamp(-(2**31), 2**31 - 1)
    return torch.where(k < 0, k ^ _FLIP, k).to(torch.int32).view(torch.float32)


def key_extreme(a: torch.Tensor, b: torch.Tensor, largest: bool) -> torch.Tensor:
    """Elementwise max (``largest``) or min of float32 ``a`` and ``b`` in key order (-0.0 < +0.0,
    the order of the ranked lists); NaN in either gives NaN."""
    ka, kb = order_key(a), order_key(b)
    v = key_value(torch.maximum(ka, kb) if largest else torch.minimum(ka, kb))
    return torch.where(torch.isnan(a) | torch.isnan(b), float("nan"), v)


def column_extreme(x: torch.Tensor, largest: bool) -> torch.Tensor:
    """:func:`key_extreme` over the rows of ``x [N, d]`` (``N >= 1``)."""
    keys = order_key(x)
    v = key_value(keys.amax(0) if largest else keys.amin(0))
    return torch.where(torch.isnan(x).any(0), float("nan"), v)


def batch_extremes(keys: torch.Tensor, k: int, largest: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Per neuron, the ``k`` best of a batch's tokens, ties broken by token order.

    Args:
        keys: ``[N, d]`` order keys of the batch's tokens, rows in ``(window, position)`` order.
    Returns:
        ``(key [d, k'], local [d, k'])`` with ``k' = min(k, N)``; ``local`` indexes rows of keys.
    """
    n = keys.shape[0]
    local = torch.arange(n, device=keys.device, dtype=torch.int64)[:, None]
    tie = (MASK32 - local) if largest else local
    comp = (keys << 32) | tie
    best = torch.topk(comp.T, min(k, n), dim=1, largest=largest, sorted=True).values
    low = best & MASK32
    return best >> 32, (MASK32 - low) if largest else low


def merge_ranked(
    a: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
    b: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
    k: int,
    largest: bool,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The ``k`` best of two ranked lists ``(key [d, ka], g [d, ka], acts [d, ka, C])``."""
    key, g, sel = rank_union(a[0], a[1], b[0], b[1], k, largest)
    acts = torch.cat([a[2], b[2]], 1)
    pick = sel[..., None].expand(-1, -1, acts.shape[2])
    return key, g, acts.gather(1, pick)


def rank_union(
    a_key: torch.Tensor,
    a_g: torch.Tensor,
    b_key: torch.Tensor,
    b_g: torch.Tensor,
    k: int,
    largest: bool,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(key, g, sel)`` of the ``k`` best by ``(key, then g ascending)`` of two lists per row;
    ``sel [d, k]`` indexes the concatenation ``[a, b]``."""
    key = torch.cat([a_key, b_key], 1)
    g = torch.cat([a_g, b_g], 1)
    o1 = torch.argsort(g, dim=1, stable=True)
    o2 = torch.argsort(key.gather(1, o1), dim=1, stable=True, descending=largest)
    sel = o1.gather(1, o2)[:, :k]
    return key.gather(1, sel), g.gather(1, sel), sel


def refine_candidates(
    x: torch.Tensor, ti: torch.Tensor, ni: torch.Tensor, k: int, largest: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per neuron, the ``k`` best of candidate entries ``x[ti, ni]`` (``ti`` ascending).

    Returns:
        ``(key [d, k], local [d, k])``; missing entries have the empty key and ``local = -1``.
    """
    d = x.shape[1]
    key = order_key(x[ti, ni])
    o = torch.argsort(key, descending=largest, stable=True)  # ties keep ti (token) order
    o = o[torch.argsort(ni[o], stable=True)]
    n_sorted = ni[o]
    rank = torch.arange(o.numel(), device=x.device) - torch.searchsorted(n_sorted, n_sorted)
    keep = o[rank < k]
    rows, cols = ni[keep], rank[rank < k]
    kbuf = torch.full((d, k), TOP_EMPTY if largest else BOTTOM_EMPTY, device=x.device)
    lbuf = torch.full((d, k), -1, dtype=torch.int64, device=x.device)
    kbuf[rows, cols] = key[keep]
    lbuf[rows, cols] = ti[keep]
    return kbuf, lbuf


def reservoir_insert(
    res: dict[str, torch.Tensor],
    group: torch.Tensor,
    prio: torch.Tensor,
    g: torch.Tensor,
    value: torch.Tensor,
) -> None:
    """Offer candidates ``[M]``, in ascending priority, to the bottom-r reservoirs (in place).

    ``res`` holds ``h [G, r]`` (ascending priorities, ``INT64_MAX`` = empty), ``g [G, r]`` and
    ``v [G, r]``. Candidates must be new tokens (distinct priorities).
    """
    r, m = res["h"].shape[1], group.numel()
    # Sort by (group, arrival): a unique int64 key, so an unstable sort is enough.
    key = torch.sort(group * m + torch.arange(m, device=group.device)).values
    grp, idx = key // m, key % m
    rank = torch.arange(m, device=grp.device) - torch.searchsorted(grp, grp)
    keep = rank < r
    idx, grp, rank = idx[keep], grp[keep], rank[keep]
    touched, inv = torch.unique_consecutive(grp, return_inverse=True)
    new = _empty_rows(touched.numel(), r, res)
    new["h"][inv, rank] = prio[idx]
    new["g"][inv, rank] = g[idx]
    new["v"][inv, rank] = value[idx]
    merged = _bottom_r({n: res[n].index_select(0, touched) for n in res}, new, r)
    for n in res:
        res[n].index_copy_(0, touched, merged[n])


def _empty_rows(n: int, r: int, like: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    dev = like["h"].device
    return {
        "h": torch.full((n, r), INT64_MAX, dtype=torch.int64, device=dev),
        "g": torch.full((n, r), -1, dtype=torch.int64, device=dev),
        "v": torch.zeros((n, r), dtype=like["v"].dtype, device=dev),
    }


def _bottom_r(
    a: dict[str, torch.Tensor], b: dict[str, torch.Tensor], r: int
) -> dict[str, torch.Tensor]:
    """Row-wise bottom-r by priority of two reservoirs (empty slots are identical, so any
    order among them gives the same bytes)."""
    # Both rows are sorted: each entry's merged position is its index plus the number of the
    # other row's entries before it (a merge without a sort; priorities are distinct but for
    # identical empty slots, which land at the end).
    ar = torch.arange(r, device=a["h"].device)
    pa = ar + (b["h"][:, None, :] < a["h"][:, :, None]).sum(-1)
    pb = ar + (a["h"][:, None, :] <= b["h"][:, :, None]).sum(-1)
    out = {}
    for n in ("h", "g", "v"):
        wide = torch.empty((a[n].shape[0], 2 * r), dtype=a[n].dtype, device=a[n].device)
        wide.scatter_(1, pa, a[n])
        wide.scatter_(1, pb, b[n])
        out[n] = wide[:, :r].contiguous()
    return out


def merge_reservoirs(a: dict[str, Any], b: dict[str, Any]) -> dict[str, torch.Tensor]:
    """Bottom-r of two reservoirs of the same groups."""
    return _bottom_r(a, b, a["h"].shape[1])
