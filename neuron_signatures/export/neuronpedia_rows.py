"""Rows of Neuronpedia's bulk-import files: who they are credited to and how they are written.

Shared by the feature/activation export (:mod:`.neuronpedia`) and the explanation export
(:mod:`.neuronpedia_explanations`), so neither imports the other's module.
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Any

from ..store.atomic import atomic_write_bytes

CREATOR_ID = "clkht01d40000jv08hvalcvly"  # the bot user of Neuronpedia's seeded database
CREATOR_NAME = "neuron-signatures"

Row = dict[str, Any]


def jsonl_bytes(rows: list[Row]) -> bytes:
    """One compact JSON object per line, UTF-8 (NaN refused)."""
    return "".join(json.dumps(r, ensure_ascii=False, allow_nan=False) + "\n" for r in rows).encode(
        "utf-8"
    )


def write_jsonl_gz(path: Path, rows: list[Row]) -> None:
    """``rows`` gzipped with a fixed mtime (the same rows give the same bytes), atomically."""
    atomic_write_bytes(path, gzip.compress(jsonl_bytes(rows), compresslevel=5, mtime=0))
