"""The reducer's GPU path (dense, fixed shapes) gives the same bytes as the compacting path, and
waits for the device nowhere: host syncs per batch counted on a CPU (``atlas.sync_count``)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from neuron_signatures.atlas import reduce
from neuron_signatures.atlas.exact import pivot
from neuron_signatures.atlas.reduce import ReduceParams, batch_tokens, new_state, update
from neuron_signatures.atlas.sync_count import count_syncs

P = ReduceParams(d_mlp=48, ctx_len=12, top_k=3, samples=2, threshold=0.1, seed=5)


def _batches(n: int, seed: int = 0) -> list[tuple[torch.Tensor, object]]:
    """Batches of ragged windows with ties, NaN, +-inf, signed zeros and subnormals."""
    gen = torch.Generator().manual_seed(seed)
    out = []
    for b in range(n):
        lengths = np.array([12, 9, 12, 5])
        acts = torch.randn(4, 12, P.d_mlp, generator=gen) * 2
        acts[:, :, :8] = torch.round(acts[:, :, :8])  # many ties
        acts[0, 3, 9], acts[1, 2, 10], acts[2, 4, 11] = float("nan"), float("inf"), -float("inf")
        acts[3, 1, 12], acts[2, 2, 13] = -0.0, 1e-42
        acts[1, 9:] = 7.0  # padding: never counted
        acts[3, 5:] = -7.0
        wins = np.arange(4) + 4 * b
        out.append((acts, batch_tokens(wins, lengths, P.ctx_len, b % 2 == 0, P.seed, "cpu")))
    return out


@pytest.mark.parametrize("chunk", [reduce.CHUNK_ENTRIES, 7 * P.d_mlp])
def test_dense_path_equals_the_compacting_path(monkeypatch: pytest.MonkeyPatch, chunk: int) -> None:
    monkeypatch.setattr(reduce, "CHUNK_ENTRIES", chunk)  # several reservoir chunks per batch
    states = {dense: new_state(P, "cpu", layer=2) for dense in (False, True)}
    for acts, bt in _batches(6):
        for dense, st in states.items():
            update(st, P, acts, bt, dense=dense)
    a, b = states[False], states[True]
    assert int(a["n"][0]) > P.top_k and (a["top_g"] >= 0).all()  # the lists filled up
    assert (a["samp_g"] >= 0).any(1).sum() > 50  # many reservoirs sampled
    for name in a:
        assert a[name].numpy().tobytes() == b[name].numpy().tobytes(), name


def test_dense_batch_has_no_host_sync_and_no_upload() -> None:
    st = new_state(P, "cpu")
    batches = _batches(3)
    update(st, P, *batches[0], dense=True)  # the first batch uploads the histogram table
    for acts, bt in batches[1:]:
        with count_syncs(host=[st["n"]]) as c:
            update(st, P, acts, bt, dense=True)
        assert (c.syncs, c.uploads) == (0, 0), c.where
        assert c.ops > 100  # the counter saw the batch's ops


def test_the_counter_sees_the_compacting_path_syncs() -> None:
    """The count is not zero by construction: the CPU path compacts candidates (``nonzero``)."""
    st = new_state(P, "cpu")
    for acts, bt in _batches(2):
        with count_syncs(host=[st["n"]]) as c:
            update(st, P, acts, bt, dense=False)
    assert c.where["nonzero"] >= 3 and c.syncs >= 5
    with count_syncs() as c:
        float(torch.ones(2).sum())
        torch.ones(3).tolist()
        torch.arange(4)[torch.arange(4) > 1]
    assert c.syncs == 3, c.where


def test_pivot_on_the_device_equals_numpy() -> None:
    special = [0.0, -0.0, 1.0, -1.5, 1e-42, -1e-45, 3.4e38, -3.4e38, 255.5, 256.5, 257.0]
    special += [float("nan"), float("inf"), -float("inf"), 1.0039062, 1.0117188, 0.1]
    v = torch.cat([torch.tensor(special), torch.randn(5000) * 1e3, torch.randn(5000) * 1e-30])
    v = v.float()
    got = reduce.pivot_torch(v).numpy()
    want = pivot(v.numpy())
    assert got.dtype == np.float64
    assert got.tobytes() == want.tobytes()
