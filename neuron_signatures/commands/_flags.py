"""Flags shared by several commands (a module starting with ``_`` is not a command)."""

from __future__ import annotations

import argparse
from typing import Any

from ..models import EMBEDDED_NAME

DTYPES = ["auto", "bf16", "fp16", "fp32"]


def add_model_arguments(p: argparse.ArgumentParser | Any) -> None:
    """``--model_name``, ``--device``, ``--model_dtype``: model flags (dump, atlas, intervene)."""
    p.add_argument(
        "--model_name",
        default=EMBEDDED_NAME,
        help=f"model spec: {EMBEDDED_NAME} (embedded, default), hub id, folder or .gguf",
    )
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:N (default: cuda if available)")
    p.add_argument(
        "--model_dtype",
        choices=DTYPES,
        default="auto",
        help="compute dtype; auto = bf16 on a GPU or a CPU with native bf16 (AVX512-BF16/AMX), "
        "else fp32 (emulated bf16 ran 5x slower than fp32 on an AVX2 CPU); fp32 = exact mode",
    )
