"""Peaks mode end to end: stream the run, aggregate, rank, and write the analysis files.

Files (in ``<run_dir>/analysis/`` or ``out_dir``):

* ``neurons_aggregated.csv`` / ``.parquet``: one row per (layer, neuron), prototype columns first;
* ``top_neurons_<top200|cum0.8>[_bos].json``: the selection, named by its parameters, so runs
  with other arguments never overwrite each other;
* ``top_neurons.json``: a copy of the latest selection (its ``selection`` says which);
* ``analysis_meta.json``: format version, every argument, the run and the files written.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import BadArgumentError
from ..store import open_run
from ..store.build import library_versions
from ..store.manifest import utc_now
from ..tokens import DEFAULT_FUNCTIONAL_TOKENS
from .peaks import AGGREGATED_COLUMNS, aggregate_peaks, compute_prompt_peaks
from .results import analysis_dir, write_json
from .selection import Selection, select
from .tables import FORMAT_VERSION, jsonable, records, write_table

log = logging.getLogger(__name__)


@dataclass
class PeaksResult:
    """What a peaks analysis produced: the full table, the selected rows and the files."""

    table: Any  # pandas DataFrame, one row per (layer, neuron)
    selected: Any  # pandas DataFrame of the selection, with a ``rank`` column
    files: list[Path] = field(default_factory=list)
    meta: dict[str, Any] = field(default_factory=dict)


def load_functional_tokens(path: str | Path | None) -> frozenset[str]:
    """The functional-token set: the default, or a JSON list of strings replacing it."""
    if path is None:
        return DEFAULT_FUNCTIONAL_TOKENS
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise BadArgumentError(f"--functional_tokens_json {path} is unreadable ({e})") from None
    if not isinstance(data, list) or not all(isinstance(t, str) for t in data):
        raise BadArgumentError(
            f"--functional_tokens_json {path} must hold a JSON list of strings, e.g. "
            '["the", "of", ","]'
        )
    return frozenset(t.strip().lower() for t in data)


def run_peaks(
    run_dir: str | Path,
    selection: Selection,
    *,
    out_dir: str | Path | None = None,
    include_bos: bool = False,
    functional_tokens_json: str | Path | None = None,
    args: dict[str, Any] | None = None,
) -> PeaksResult:
    """Compute the peaks table of a run, select its head and write the analysis files."""
    import pandas as pd

    t0 = time.perf_counter()
    run = open_run(run_dir)
    functional = load_functional_tokens(functional_tokens_json)
    peaks = compute_prompt_peaks(run, include_bos=include_bos)
    table = pd.DataFrame(aggregate_peaks(run, peaks, functional), columns=list(AGGREGATED_COLUMNS))
    chosen = select(table["mean_peak_abs"].to_numpy(), selection)
    selected = table.iloc[chosen].reset_index(drop=True)
    selected.insert(0, "rank", range(1, len(selected) + 1))
    folder = analysis_dir(run.run_dir, out_dir)
    folder.mkdir(parents=True, exist_ok=True)
    tag = selection.tag + ("_bos" if include_bos else "")
    sel = {
        **selection.to_dict(),
        "include_bos": include_bos,
        "tag": tag,
        "ranked_by": "mean_peak_abs",
        "n_selected": len(selected),
    }
    meta = {
        "format_version": FORMAT_VERSION,
        "kind": "peaks",
        "created_at_utc": utc_now(),
        "run_dir": str(run.run_dir),
        "model_name": run.model_name,
        "n_prompts": run.n_prompts,
        "n_prompts_used": int(peaks.used.sum()),
        "n_tokens_scored": peaks.n_tokens,
        "layers": run.layers,
        "d_mlp": run.d_mlp,
        "save_dtype": run.save_dtype,
        "include_bos": include_bos,
        "functional_tokens": sorted(functional),
        "functional_tokens_json": str(functional_tokens_json) if functional_tokens_json else None,
        "tie_breaking": "peak position: first; mode: most frequent, then smallest value; "
        "ranking: mean_peak_abs descending, then layer, then neuron",
        "selection": sel,
        "args": args or {},
        "versions": library_versions(),
    }
    files = write_table(table, folder / "neurons_aggregated.csv")
    doc = {
        "format_version": FORMAT_VERSION,
        "kind": "top_neurons",
        "selection": sel,
        "source": "neurons_aggregated.csv",
        "run_dir": str(run.run_dir),
        "model_name": run.model_name,
        "neurons": records(selected),
    }
    for name in (f"top_neurons_{tag}.json", "top_neurons.json"):
        write_json(folder / name, jsonable(doc))
        files.append(folder / name)
    meta["files"] = [p.name for p in files] + ["analysis_meta.json"]
    meta["seconds"] = round(time.perf_counter() - t0, 3)
    write_json(folder / "analysis_meta.json", jsonable(meta))
    files.append(folder / "analysis_meta.json")
    log.info("peaks: %d neurons selected (%s) in %.2fs", len(selected), tag, meta["seconds"])
    return PeaksResult(table, selected, files, meta)
