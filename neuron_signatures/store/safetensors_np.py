"""A torch-free, memory-mapped safetensors reader (numpy), including bfloat16.

The format is an 8-byte little-endian header size, a JSON header mapping tensor names to
``{"dtype", "shape", "data_offsets"}`` and the raw data. Reading through ``np.memmap`` means a
slice touches only the pages it needs, and the UIs never import torch.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np

_NP_DTYPES: dict[str, np.dtype] = {
    "F32": np.dtype("<f4"),
    "F16": np.dtype("<f2"),
    "BF16": np.dtype("<u2"),  # raw bits; widened by to_float32
    "F64": np.dtype("<f8"),
    "I64": np.dtype("<i8"),
    "I32": np.dtype("<i4"),
}


class SafetensorsFile:
    """Memory-mapped view of one ``.safetensors`` file: ``raw(name)`` and ``dtype(name)``."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        with open(self.path, "rb") as f:
            (n,) = struct.unpack("<Q", f.read(8))
            header = json.loads(f.read(n))
        self.metadata: dict[str, str] = header.pop("__metadata__", {}) or {}
        self._header: dict[str, dict] = header
        self._base = 8 + n
        self._mm: np.memmap | None = None

    @property
    def names(self) -> list[str]:
        return list(self._header)

    def dtype(self, name: str) -> str:
        return self._header[name]["dtype"]

    def shape(self, name: str) -> tuple[int, ...]:
        return tuple(self._header[name]["shape"])

    def raw(self, name: str) -> np.ndarray:
        """The stored array (bf16 as uint16 bits), memory-mapped, no copy."""
        info = self._header[name]
        if self._mm is None:
            self._mm = np.memmap(self.path, dtype=np.uint8, mode="r")
        start, stop = info["data_offsets"]
        buf = self._mm[self._base + start : self._base + stop]
        return buf.view(_NP_DTYPES[info["dtype"]]).reshape(info["shape"])


def to_float32(raw: np.ndarray, st_dtype: str) -> np.ndarray:
    """Widen a raw stored array to float32 (bf16 bits are shifted into the high half)."""
    if st_dtype == "BF16":
        return (np.asarray(raw, dtype=np.uint32) << 16).view(np.float32)
    return np.asarray(raw, dtype=np.float32)
