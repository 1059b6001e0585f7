"""The prototype's ``activations.pt``: export from shards (``--save_format pt``)."""

from __future__ import annotations

import io

from .manifest import LEGACY_FILE, atomic_write_bytes
from .reader import Run


def export_legacy_pt(run: Run, save_dtype: str) -> None:
    """Write ``activations.pt``: dict ``probe_id -> [n_layers, seq_len, d_mlp]`` in the save dtype.

    This format holds the whole run in one pickle-free tensor dict, so it needs memory for the
    whole run once; the shards stay the primary copy. Values round-trip exactly: every stored
    bf16/fp16 value is representable in the float32 the reader returns.
    """
    import torch

    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}[save_dtype]
    tensors = {
        p.probe_id: torch.from_numpy(run.prompt_acts(p.index)).to(dtype) for p in run.prompts
    }
    buf = io.BytesIO()
    torch.save(tensors, buf)
    atomic_write_bytes(run.run_dir / LEGACY_FILE, buf.getvalue())
