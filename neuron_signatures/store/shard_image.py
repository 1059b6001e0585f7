"""A shard's safetensors file built in place in one page-aligned buffer, and written with O_DIRECT.

Writing a dump's shards through the page cache cost as much CPU as hashing them: every byte is
copied by the kernel into freshly allocated cache pages (4 CPU seconds for the 937 MB of the
benchmark dump on 2 cores, 15% of the job, taken from the forward's threads). Here:

1. :func:`safetensors_header` lays the file out from the tensors' names, dtypes and shapes alone:
   8-byte size, JSON header (space-padded to 8 bytes), raw tensors in name order. The same
   function serves :func:`.writer.safetensors_chunks`, so both give the same bytes.
2. A :class:`ShardImage` is that file in a page-aligned buffer (its length rounded up to a page);
   its ``tensors`` are views into the buffer, so the capture casts each layer's rows straight to
   their place in the file: no separate bf16 tensors, no serialising copy.
3. :func:`.atomic.atomic_write_image` hashes the image and writes it with ``O_DIRECT`` (the disk
   reads the buffer itself: no copy into the page cache), then truncates the page padding, fsyncs
   and renames. Where a file system refuses ``O_DIRECT`` (tmpfs, some network mounts) it writes
   through the page cache instead; the bytes are the same.
4. :class:`ShardBuffers` keeps two buffers and hands them out in turn: one is filled while the
   other is written, and reusing them spares the page faults of new allocations each batch.
"""

from __future__ import annotations

import json
import struct
from typing import Any

import numpy as np

PAGE = 4096  # O_DIRECT alignment of buffer addresses, file offsets and lengths (a safe bound)
ST_DTYPES = {"torch.float32": "F32", "torch.float16": "F16", "torch.bfloat16": "BF16"}
_ITEMSIZE = {"F32": 4, "F16": 2, "BF16": 2}


def safetensors_header(specs: dict[str, tuple[str, list[int]]]) -> tuple[bytes, dict[str, int]]:
    """``(prefix, offsets)`` of a safetensors file of tensors ``{name: (dtype, shape)}``.

    ``prefix`` is the 8-byte header size and the JSON header (one metadata key, space-padded to 8
    bytes); ``offsets[name]`` is where each tensor's raw bytes start in the file. Tensors are laid
    out in name order, so the same tensors always give the same bytes.
    """
    header: dict[str, Any] = {"__metadata__": {"format": "pt"}}
    at, starts = 0, {}
    for name in sorted(specs):
        dtype, shape = specs[name]
        n = int(np.prod(shape, dtype=np.int64)) * _ITEMSIZE[dtype]
        header[name] = {"dtype": dtype, "shape": list(shape), "data_offsets": [at, at + n]}
        starts[name] = at
        at += n
    head = json.dumps(header, separators=(",", ":")).encode()
    head += b" " * (-len(head) % 8)
    prefix = struct.pack("<Q", len(head)) + head
    return prefix, {name: len(prefix) + s for name, s in starts.items()}


def aligned(n: int) -> np.ndarray:
    """A writable uint8 array of ``n`` bytes whose first byte sits on a page boundary."""
    raw = np.empty(n + PAGE, dtype=np.uint8)
    skip = -raw.ctypes.data % PAGE
    return raw[skip : skip + n]


class ShardImage:
    """The bytes of one safetensors file, in a page-aligned buffer.

    Attributes:
        size: the file's length in bytes.
        buffer: ``size`` rounded up to :data:`PAGE` bytes (what an ``O_DIRECT`` write sends).
        backing: the whole buffer ``buffer`` starts (at least as long; reused by the next image).
        tensors: ``{name: torch.Tensor}`` views of the tensors' bytes, to be filled.
    """

    def __init__(self, specs: dict[str, tuple[Any, list[int]]], buffer: np.ndarray | None = None):
        import torch

        names = _names(specs)
        prefix, starts = safetensors_header(names)
        self.size = _size(names, starts)
        padded = -(-self.size // PAGE) * PAGE
        if buffer is None or buffer.nbytes < padded:
            buffer = aligned(padded)
        self.backing = buffer  # the whole buffer, for reuse
        self.buffer = buffer[:padded]
        self.buffer[: len(prefix)] = np.frombuffer(prefix, dtype=np.uint8)
        self.buffer[self.size :] = 0  # the page padding (truncated away) never leaks old bytes
        raw = torch.from_numpy(self.buffer)
        self.tensors = {}
        for name, (dt, shape) in specs.items():
            n = int(np.prod(shape)) * _ITEMSIZE[names[name][0]]
            at = starts[name]
            self.tensors[name] = raw[at : at + n].view(dt).view(*shape)

    def data(self) -> memoryview:
        """The file's bytes (``size`` of them)."""
        return memoryview(self.buffer[: self.size].data)


def padded_size(specs: dict[str, tuple[Any, list[int]]]) -> int:
    """The buffer length of a :class:`ShardImage` of ``specs`` (its file size, page-rounded)."""
    names = _names(specs)
    return -(-_size(names, safetensors_header(names)[1]) // PAGE) * PAGE


def _names(specs: dict[str, tuple[Any, list[int]]]) -> dict[str, tuple[str, list[int]]]:
    return {name: (ST_DTYPES[str(dt)], list(shape)) for name, (dt, shape) in specs.items()}


def _size(names: dict[str, tuple[str, list[int]]], starts: dict[str, int]) -> int:
    last = max(starts, key=starts.__getitem__)
    return starts[last] + int(np.prod(names[last][1])) * _ITEMSIZE[names[last][0]]


class ShardBuffers:
    """``n`` (two) reusable page-aligned buffers, handed out in turn (module docstring, 4).

    ``reserve``: the largest image expected (:func:`padded_size`), allocated at the first use so
    that growing shards (a dump's batches are sorted by length) do not allocate again; without
    it a buffer that is too small grows by half at least.
    """

    def __init__(self, reserve: int = 0, n: int = 2) -> None:
        self._bufs: list[np.ndarray | None] = [None] * n
        self._turn = 0
        self._reserve = reserve

    def image(self, specs: dict[str, tuple[Any, list[int]]]) -> ShardImage:
        """A :class:`ShardImage` in the next buffer (grown when too small): the caller must be done
        writing the image handed out ``n`` calls ago."""
        buf = self._bufs[self._turn]
        need = padded_size(specs)
        if buf is None or buf.nbytes < need:  # grown by half at least: few reallocations
            grown = int(buf.nbytes * 1.5) if buf is not None else 0
            buf = aligned(-(-max(need, grown, self._reserve) // PAGE) * PAGE)
        img = ShardImage(specs, buf)
        self._bufs[self._turn] = img.backing
        self._turn = (self._turn + 1) % len(self._bufs)
        return img
