"""The prototype's ``activations.pt``: read prototype runs, and export it from the shards.

Reading: ``torch.load(weights_only=True, mmap=True)``, so nothing arbitrary is unpickled and a
prompt is read only when asked for.

Export (``--save_format pt``), one prompt at a time.

``torch.save`` of a dict needs every tensor in memory at once (and the old export held the run
three times over: 8.5 GB of RSS for a 2.7 GB run). Instead:

1. save a dict of placeholder tensors (never filled) under ``torch.serialization.skip_data``:
   the archive gets its pickle, every record's header and the space for its bytes, but no data
   (the file is sparse until filled);
2. for each prompt, in dict order (``data/0``, ``data/1``... follow it), read its activations from
   the shards, cast to the save dtype and ``pwrite`` them into their record, then patch the
   record's CRC-32 (central directory, data descriptor) so zip tools check it too;
3. fsync and rename into place, like every other file of the run.

Memory is one prompt; the result is what ``torch.save`` of the full dict would load as.
"""

from __future__ import annotations

import os
import struct
import tempfile
import zipfile
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import IncompleteRunError, RunFormatError
from .atomic import FILE_MODE, fsync_dir
from .manifest import LEGACY_FILE
from .run import ActivationSource, Block, Run

_CENTRAL_SIG = b"PK\x01\x02"
_DESCRIPTOR_SIG = b"PK\x07\x08"


class _LegacySource:
    """One prompt of a prototype ``activations.pt``: a torch tensor ``[n_layers, seq, d_mlp]``."""

    def __init__(self, tensor: Any) -> None:
        self._t = tensor

    def rows(self, layer_pos: int, start: int, stop: int) -> np.ndarray:
        return self._t[layer_pos, start:stop].float().numpy()

    def column(self, layer_pos: int, neuron: int, start: int, stop: int) -> np.ndarray:
        return self._t[layer_pos, start:stop, neuron].float().numpy()

    def block(self, layer_pos: int) -> np.ndarray:
        return self._t[layer_pos].float().numpy()


class _LegacyRun(Run):
    def __init__(self, run_dir: Path, manifest: dict[str, Any]) -> None:
        super().__init__(run_dir, manifest)
        self._tensors: dict[str, Any] | None = None
        self._sources: dict[int, ActivationSource] = {}

    def _load(self) -> dict[str, Any]:
        if self._tensors is None:
            import torch  # only prototype runs need torch to read

            path = self.run_dir / str(self.manifest.get("activations_file", LEGACY_FILE))
            if not path.is_file():
                raise IncompleteRunError(f"{path} is missing: copy the whole run folder")
            try:
                self._tensors = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
            except Exception as e:
                raise RunFormatError(
                    f"{path} is not a plain tensor dict ({type(e).__name__}); refusing to "
                    "unpickle arbitrary objects"
                ) from None
        return self._tensors

    def _location(self, index: int) -> tuple[ActivationSource, int]:
        if index not in self._sources:
            p = self.manifest["prompts"][index]
            key = p.get("activation_tensor_key", p["probe_id"])
            tensors = self._load()
            if key not in tensors:
                raise RunFormatError(f"activations.pt has no tensor {key!r} for prompt {index}")
            self._sources[index] = _LegacySource(tensors[key])
        return self._sources[index], 0

    def iter_blocks(self) -> Iterator[Block]:
        for i, p in enumerate(self.prompts):
            src, _ = self._location(i)
            yield Block(self, src, [i], [0], [p.seq_len])


def export_legacy_pt(run: Run, save_dtype: str) -> None:
    """Write ``activations.pt``: dict ``probe_id -> [n_layers, seq_len, d_mlp]`` in the save dtype.

    Values round-trip exactly: every stored bf16/fp16 value is representable in the float32 the
    reader returns. Memory stays at one prompt whatever the size of the run.
    """
    import torch

    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}[save_dtype]
    n_cap = len(run.layers)
    # Uninitialised tensors are address space only: skip_data never reads them, so their pages are
    # never touched. (FakeTensorMode would avoid even that but costs ~70 MB of its own.)
    placeholders = {
        p.probe_id: torch.empty((n_cap, p.seq_len, run.d_mlp), dtype=dtype) for p in run.prompts
    }
    dest = run.run_dir / LEGACY_FILE
    fd, tmp_name = tempfile.mkstemp(prefix=f".{LEGACY_FILE}.", suffix=".tmp", dir=run.run_dir)
    os.fchmod(fd, FILE_MODE)  # as open() would create it (mkstemp makes 0600)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        with torch.serialization.skip_data():
            torch.save(placeholders, tmp)
        del placeholders
        records = _records(tmp, len(run.prompts))
        with open(tmp, "r+b") as f:
            for p, rec in zip(run.prompts, records, strict=True):
                t = torch.from_numpy(run.prompt_acts(p.index)).to(dtype).contiguous()
                _fill(f.fileno(), rec, t.reshape(-1).view(torch.uint8).numpy())
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, dest)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(run.run_dir)


def _records(path: Path, n: int) -> list[dict[str, Any]]:
    """Where the bytes (and CRC fields) of records ``data/0..n-1`` of a torch zip archive are."""
    with zipfile.ZipFile(path) as z, open(path, "rb") as f:
        infos = {i.filename.split("/", 1)[-1]: i for i in z.infolist()}
        central = _central_offsets(f, z.start_dir, len(infos))
        out = []
        for k in range(n):
            info = infos[f"data/{k}"]
            if info.compress_type != zipfile.ZIP_STORED:
                raise RuntimeError("torch.save compressed a record: cannot fill it in place")
            f.seek(info.header_offset)
            head = f.read(30)
            name_len, extra_len = struct.unpack("<HH", head[26:30])
            out.append(
                {
                    "data": info.header_offset + 30 + name_len + extra_len,
                    "size": info.file_size,
                    "local": info.header_offset,
                    "central": central[info.filename],
                    "descriptor": bool(info.flag_bits & 0x08),
                }
            )
    return out


def _central_offsets(f: Any, start: int, count: int) -> dict[str, int]:
    """File offset of each record's central-directory entry, by name."""
    out = {}
    f.seek(start)
    for _ in range(count):
        pos = f.tell()
        head = f.read(46)
        if head[:4] != _CENTRAL_SIG:
            break
        name_len, extra_len, comment_len = struct.unpack("<HHH", head[28:34])
        name = f.read(name_len).decode("utf-8")
        f.seek(extra_len + comment_len, os.SEEK_CUR)
        out[name] = pos
    return out


def _fill(fd: int, rec: dict[str, Any], data: Any) -> None:
    """Write one record's bytes and its CRC-32 everywhere the archive keeps it."""
    view = memoryview(data).cast("B")
    if len(view) != rec["size"]:
        raise RuntimeError(f"record size {rec['size']} != tensor bytes {len(view)}")
    done = 0
    while done < len(view):
        done += os.pwrite(fd, view[done:], rec["data"] + done)
    crc = struct.pack("<I", zlib.crc32(view))
    os.pwrite(fd, crc, rec["central"] + 16)
    if rec["descriptor"]:
        end = rec["data"] + rec["size"]
        sig = os.pread(fd, 4, end)
        os.pwrite(fd, crc, end + 4 if sig == _DESCRIPTOR_SIG else end)
    else:
        os.pwrite(fd, crc, rec["local"] + 14)
