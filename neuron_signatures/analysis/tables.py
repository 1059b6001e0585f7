"""Writing analysis tables and records: atomic CSV/Parquet, JSON-safe values, safe file names."""

from __future__ import annotations

import hashlib
import io
import math
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from ..store.atomic import atomic_write_bytes

FORMAT_VERSION = 1
_PLAIN_ID = re.compile(r"[A-Za-z0-9_.]{1,64}")
_MAX_SLUG = 40


def safe_name(text: str) -> str:
    """A file-name-safe form of a name: anything but letters, digits, ``._-`` becomes ``_``.

    Not injective (``東京`` and ``大阪`` both give ``_``): name per-prompt files with
    :func:`prompt_file_ids` instead.
    """
    return re.sub(r"[^A-Za-z0-9._-]+", "_", str(text)) or "_"


def _hashed_id(pid: str, n_hex: int) -> str:
    slug = re.sub(r"[^A-Za-z0-9_.]+", "_", pid).strip("_")[:_MAX_SLUG] or "id"
    return f"{slug}-{hashlib.sha256(pid.encode('utf-8')).hexdigest()[:n_hex]}"


def prompt_file_id(pid: str, n_hex: int = 8) -> str:
    """The file-name form of one prompt id, on its own (see :func:`prompt_file_ids`)."""
    pid = str(pid)
    return pid if _PLAIN_ID.fullmatch(pid) else _hashed_id(pid, n_hex)


def _clashes(names: dict[str, str]) -> set[str]:
    """Ids whose names are equal up to case (case-insensitive file systems) to another's."""
    seen: dict[str, list[str]] = {}
    for pid, name in names.items():
        seen.setdefault(name.casefold(), []).append(pid)
    return {pid for group in seen.values() if len(group) > 1 for pid in group}


def prompt_file_ids(ids: Iterable[str], n_hex: int = 8) -> dict[str, str]:
    """File-name forms of a run's prompt ids, distinct even on case-insensitive file systems.

    1. An id of 1-64 characters from ``[A-Za-z0-9_.]`` stays as it is (``seed_prompt``).
    2. Any other id becomes a readable slug, ``-`` and ``n_hex`` hex digits of its sha256
       (``Q: a?`` → ``Q_a-<8 hex>``). Plain ids have no ``-``, so the two forms never meet.
    3. Ids whose names still clash (plain ids equal up to case, or a short hash collision) take
       the hashed form with twice the digits, until none clash (at worst the full sha256).
    """
    names = {str(pid): prompt_file_id(str(pid), n_hex) for pid in ids}
    while clash := _clashes(names):
        if n_hex >= 64:  # equal full sha256 of different ids: not a thing that happens
            raise ValueError(f"prompt ids {sorted(clash)} have no distinct file names")
        n_hex = min(64, n_hex * 2)
        names.update({pid: _hashed_id(pid, n_hex) for pid in clash})
    return names


def jsonable(value: Any) -> Any:
    """Numpy scalars/arrays → Python; NaN/inf → None (JSON has no NaN)."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return jsonable(value.tolist())
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def write_table(df: Any, csv_path: Path, parquet: bool = True) -> list[Path]:
    """Write ``df`` (a pandas DataFrame) as CSV and, optionally, Parquet next to it; atomic."""
    import pyarrow as pa
    import pyarrow.csv as pacsv

    table = pa.Table.from_pandas(df, preserve_index=False)
    sink = io.BytesIO()
    pacsv.write_csv(table, sink)  # 5x faster than DataFrame.to_csv on 240k rows
    atomic_write_bytes(csv_path, sink.getvalue())
    out = [csv_path]
    if parquet:
        pq = csv_path.with_suffix(".parquet")
        import pyarrow.parquet as papq

        bio = io.BytesIO()
        papq.write_table(table, bio)
        atomic_write_bytes(pq, bio.getvalue())
        out.append(pq)
    return out


def records(df: Any) -> list[dict[str, Any]]:
    """Rows of a DataFrame as JSON-safe dicts."""
    return [jsonable(r) for r in df.to_dict(orient="records")]
