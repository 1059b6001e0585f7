"""Keep freed memory in the process for reuse (glibc's malloc), where a command owns its process.

A batch's captured activations (18 layers of ``[tokens, d_mlp]`` on the embedded model: 265 MB
in bf16) are freed after the reduction; with glibc's default thresholds that memory goes back to
the kernel and the next batch's forward faults every page in again (some 800k page faults per
30k-token atlas; on the development VM a fault costs microseconds, and an atlas's loop ran 5-8%
slower for it). :func:`keep_freed_memory` raises the thresholds so that freed blocks of up to 32
MB stay in the heap and the heap is not trimmed until 1 GiB of it is free: the next batch reuses
the same pages. Peak memory is unchanged (the same blocks are live at the peak); between batches
the process keeps what it freed.

It is process-wide and lasts as long as the process (``mallopt`` also turns off glibc's own
adaptive thresholds), so library functions never call it: the ``atlas`` command does, before it
loads the model. ``NEURON_SIGNATURES_KEEP_FREED_MEMORY=0`` turns it off. Elsewhere than glibc
(macOS, musl) it does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import sys

log = logging.getLogger(__name__)

ENV = "NEURON_SIGNATURES_KEEP_FREED_MEMORY"
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # glibc's malloc.h
MMAP_THRESHOLD = 32 << 20  # glibc's largest on 64-bit (HEAP_MAX_SIZE / 2)
TRIM_THRESHOLD = 1 << 30


def keep_freed_memory() -> bool:
    """Set glibc's ``M_MMAP_THRESHOLD`` to 32 MiB and ``M_TRIM_THRESHOLD`` to 1 GiB for this
    process (see the module docstring); returns whether both were set."""
    if sys.platform != "linux" or os.environ.get(ENV, "1") == "0":
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    done = bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(
        mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD)
    )
    log.debug("malloc keeps freed memory: %s", done)
    return done
