"""Shard files built in place in an aligned buffer and written with O_DIRECT: the same bytes as
the serialised tensors, read back by the safetensors library, on every write path."""

from __future__ import annotations

import errno
import hashlib
import os
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file

from neuron_signatures.store import atomic
from neuron_signatures.store.shard_image import PAGE, ShardBuffers, ShardImage, padded_size
from neuron_signatures.store.writer import safetensors_chunks


def _tensors(n: int = 37, d: int = 24) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(n)
    out = {f"layer_{i}": torch.randn(n, d, generator=g).to(torch.bfloat16) for i in (2, 10, 1)}
    out["layer_7"] = torch.randn(n, d, generator=g).to(torch.float16)  # any supported dtype
    out["layer_9"] = torch.randn(n, d, generator=g)
    return out


def _image(tensors: dict[str, torch.Tensor], into: ShardBuffers | None = None) -> ShardImage:
    specs = {k: (t.dtype, list(t.shape)) for k, t in tensors.items()}
    img = into.image(specs) if into else ShardImage(specs)
    for k, t in tensors.items():
        img.tensors[k].copy_(t)
    return img


def test_image_bytes_equal_the_serialised_tensors() -> None:
    tensors = _tensors()
    img = _image(tensors)
    assert bytes(img.data()) == b"".join(bytes(c) for c in safetensors_chunks(tensors))
    assert img.buffer.ctypes.data % PAGE == 0 and img.buffer.nbytes % PAGE == 0
    specs = {k: (t.dtype, list(t.shape)) for k, t in tensors.items()}
    assert img.buffer.nbytes == padded_size(specs)
    assert not img.buffer[img.size :].any()


@pytest.mark.parametrize("how", ["direct", "page cache (env)", "refused (EINVAL)"])
def test_atomic_write_image_paths(
    how: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tensors = _tensors()
    img = _image(tensors)
    taken: list[bool] = []
    real = atomic._write_direct

    def spy(fd: int, buffer: Any) -> bool:
        taken.append(real(fd, buffer))
        return taken[-1]

    monkeypatch.setattr(atomic, "_write_direct", spy)
    if how == "page cache (env)":
        monkeypatch.setenv(atomic.DIRECT_IO_ENV, "1")
    if how == "refused (EINVAL)":  # what tmpfs and some network file systems answer
        real_write = os.write

        def refuse(fd: int, data: Any) -> int:
            import fcntl

            if fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_DIRECT:
                raise OSError(errno.EINVAL, "Invalid argument")
            return real_write(fd, data)

        monkeypatch.setattr(atomic.os, "write", refuse)
    path = tmp_path / "shard_00000.safetensors"
    path.write_bytes(b"old")  # replaced whole
    size, digest = atomic.atomic_write_image(path, img)
    raw = path.read_bytes()
    assert raw == b"".join(bytes(c) for c in safetensors_chunks(tensors))
    assert (size, digest) == (len(raw), hashlib.sha256(raw).hexdigest())
    assert taken == [how == "direct"]
    back = load_file(str(path))
    assert all(torch.equal(back[k], tensors[k]) for k in tensors)
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no temporary file left
    assert path.stat().st_mode & 0o777 == atomic.FILE_MODE


def test_buffers_alternate_reuse_and_grow() -> None:
    bufs = ShardBuffers()
    big, small = _tensors(64), _tensors(5)
    a = _image(big, bufs)
    b = _image(small, bufs)
    assert a.buffer.ctypes.data != b.buffer.ctypes.data  # one is written while the other fills
    c = _image(small, bufs)  # the first buffer again: smaller now, its old bytes past it zeroed
    assert c.buffer.ctypes.data == a.buffer.ctypes.data
    assert bytes(c.data()) == b"".join(bytes(x) for x in safetensors_chunks(small))
    assert not c.buffer[c.size :].any()
    d = _image(big, bufs)  # the second buffer grows
    assert d.backing.nbytes >= a.buffer.nbytes
    reserved = ShardBuffers(reserve=padded_size({"x": (torch.bfloat16, [1000, 24])}))
    first = _image(small, reserved).backing
    assert first.nbytes >= 1000 * 24 * 2  # allocated once at its full size
    _image(small, reserved)
    assert _image(big, reserved).backing.ctypes.data == first.ctypes.data


@pytest.mark.parametrize("how", ["direct", "page cache (env)", "small file"])
def test_atomic_write_bytes_large_files_go_direct(
    how: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Files of DIRECT_MIN bytes or more (an atlas's layer files) are written with O_DIRECT from
    an aligned copy; the bytes are the same on every path and nothing temporary is left."""
    size = 100 if how == "small file" else atomic.DIRECT_MIN + 12345  # not a whole page
    data = bytes(range(256)) * (size // 256) + b"\x07" * (size % 256)
    taken: list[bool] = []
    real = atomic._write_direct

    def spy(fd: int, buffer: Any) -> bool:
        assert buffer.ctypes.data % PAGE == 0 and buffer.nbytes % PAGE == 0
        assert not buffer[size:].any()  # the padding is zeros, truncated away
        taken.append(real(fd, buffer))
        return taken[-1]

    monkeypatch.setattr(atomic, "_write_direct", spy)
    if how == "page cache (env)":
        monkeypatch.setenv(atomic.DIRECT_IO_ENV, "1")
    path = tmp_path / "layer_000.safetensors"
    path.write_bytes(b"old" * 5000)  # replaced whole, longer than nothing, shorter than data
    atomic.atomic_write_bytes(path, data)
    assert path.read_bytes() == data
    assert taken == {"direct": [True], "page cache (env)": [False], "small file": []}[how]
    assert [p.name for p in tmp_path.iterdir()] == [path.name]
    assert path.stat().st_mode & 0o777 == atomic.FILE_MODE
