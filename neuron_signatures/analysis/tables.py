"""Writing analysis tables and records: atomic CSV/Parquet, JSON-safe values, safe file names."""

from __future__ import annotations

import io
import math
import re
from pathlib import Path
from typing import Any

import numpy as np

from ..store.manifest import atomic_write_bytes

FORMAT_VERSION = 1


def safe_name(text: str) -> str:
    """A file-name-safe form of an id: anything but letters, digits, ``._-`` becomes ``_``."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", str(text)) or "_"


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
