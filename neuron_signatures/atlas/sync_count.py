"""Count, on a CPU, what would stall a GPU in a stretch of torch code: host synchronisations and
host-to-device copies, and the number of ops (about the kernels a GPU would launch).

On CUDA a host synchronisation happens wherever the host needs a value the device computes: a
data-dependent shape (``nonzero``, boolean-mask indexing, ``unique``, ``masked_select``), a
scalar read (``.item()``, ``bool(t)``, ``int(t)``), a copy to the host (``.cpu()``, ``.numpy()``,
``.tolist()``). None of these stall on a CPU, so they are counted instead:

1. a :class:`~torch.utils._python_dispatch.TorchDispatchMode` sees every aten op: each counts as
   one op (one launch), and the data-dependent ones above count as syncs;
2. the Python methods that read values (``item``, ``tolist``, ``numpy``, ``cpu``, ``__bool__``,
   ``__int__``, ``__float__``) are wrapped for the duration and count as syncs, once per call;
3. host data made into tensors (``torch.from_numpy``, ``torch.tensor``) counts as an upload.

Used by ``benchmarks/bench_atlas.py`` (rows of its table) and the reducer's tests.
"""

from __future__ import annotations

import collections
import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode

_aten = torch.ops.aten
_SYNC_OPS = {
    _aten.nonzero,
    _aten.nonzero_static,
    _aten.masked_select,
    _aten.unique_consecutive,
    _aten._unique2,
    _aten.unique_dim,
    _aten._local_scalar_dense,
    _aten.is_nonzero,
}
_READS = ("item", "tolist", "numpy", "cpu", "__bool__", "__int__", "__float__")


@dataclass
class Counts:
    """What ran inside :func:`count_syncs`.

    Attributes:
        ops: aten ops dispatched (about the kernels a GPU launches).
        syncs: host synchronisations (data-dependent shapes and value reads).
        uploads: tensors made from host data.
        where: syncs by kind (an op or a method name).
    """

    ops: int = 0
    syncs: int = 0
    uploads: int = 0
    where: collections.Counter[str] = field(default_factory=collections.Counter)

    def sync(self, what: str) -> None:
        self.syncs += 1
        self.where[what] += 1


class _Mode(TorchDispatchMode):
    def __init__(self, counts: Counts) -> None:
        super().__init__()
        self.counts = counts
        self.depth = 0  # a read method's own ops are part of that one sync

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        self.counts.ops += 1
        packet = func.overloadpacket
        if self.depth == 0:
            if packet in _SYNC_OPS:
                self.counts.sync(str(packet.__name__))
            elif packet in (_aten.index, _aten.index_put, _aten.index_put_) and _bool_index(args):
                self.counts.sync("boolean-mask index")
        return func(*args, **(kwargs or {}))


def _bool_index(args: Any) -> bool:
    indices = args[1] if len(args) > 1 else ()
    return any(isinstance(t, torch.Tensor) and t.dtype == torch.bool for t in indices or ())


@contextlib.contextmanager
def count_syncs(host: Sequence[torch.Tensor] = ()) -> Iterator[Counts]:
    """Count ops, host syncs and uploads of the torch code run inside the block (CPU tensors).

    Args:
        host: tensors that live on the host wherever the rest lives (reading them, or views of
            them, is free on a GPU too): not counted.
    """
    counts = Counts()
    mode = _Mode(counts)
    free = {t.untyped_storage().data_ptr() for t in host}
    saved: dict[str, Any] = {name: getattr(torch.Tensor, name) for name in _READS}
    made: dict[str, Any] = {"from_numpy": torch.from_numpy, "tensor": torch.tensor}

    def read(name: str) -> Any:
        real = saved[name]

        def wrapped(self: torch.Tensor, *a: Any, **k: Any) -> Any:
            if mode.depth == 0 and self.untyped_storage().data_ptr() not in free:
                counts.sync(f".{name}()")
            mode.depth += 1
            try:
                return real(self, *a, **k)
            finally:
                mode.depth -= 1

        return wrapped

    def upload(name: str) -> Any:
        real = made[name]

        def wrapped(*a: Any, **k: Any) -> Any:
            counts.uploads += 1
            return real(*a, **k)

        return wrapped

    try:
        for name in _READS:
            setattr(torch.Tensor, name, read(name))
        for name in made:
            setattr(torch, name, upload(name))
        with mode:
            yield counts
    finally:
        for name, fn in saved.items():
            setattr(torch.Tensor, name, fn)
        for name, fn in made.items():
            setattr(torch, name, fn)
