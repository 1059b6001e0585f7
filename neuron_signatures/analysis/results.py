"""Analysis result files: names, loaders and writers shared by the CLI, the TUI and the web app.

Everything lives in ``<run_dir>/analysis/`` (or a chosen folder):

* ``top_neurons.json`` / ``top_neurons_<selection>.json``: the peaks ranking (``kind: top_neurons``)
* ``influence_<pid>_<metric>_<target_mode>_pos<P>_tok<T>.json`` (+ ``.csv``, ``_meta.json``):
  the influence ranking of one prompt (``kind: influence``)
* ``write_scores_<...>.json``: tokens each neuron's output direction promotes / suppresses
* ``signatures_<...>.json``: per-neuron signature class and name (and, when checked, whether the
  write scores agree with a Say X reading)

Each JSON holds ``format_version``, ``kind`` and a ``neurons`` (or ``records``) list of dicts with
at least ``layer`` and ``neuron``. Readers here are torch-free so the UIs can use them.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..tokens import token_display

ANALYSIS_DIR = "analysis"
RESULTS_FORMAT_VERSION = 1


@dataclass(frozen=True)
class RankedNeuron:
    """One row of a ranking: ``score`` is what the ranking sorts by (signed for influence)."""

    rank: int
    layer: int
    neuron: int
    score: float
    label: str = ""  # e.g. the mode peak token, or the signature name
    fields: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)


@dataclass(frozen=True)
class Ranking:
    """A ranking file: its kind (``top_neurons`` | ``influence`` | ``signatures``) and rows."""

    path: Path
    kind: str
    title: str
    neurons: list[RankedNeuron]
    meta: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def name(self) -> str:
        return self.path.name


def analysis_dir(run_dir: str | Path, out_dir: str | Path | None = None) -> Path:
    return Path(out_dir) if out_dir else Path(run_dir) / ANALYSIS_DIR


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    return data if isinstance(data, dict) else None


def _rows(data: dict[str, Any]) -> list[dict[str, Any]]:
    rows = data.get("neurons", data.get("records", data.get("top_neurons", [])))
    return [r for r in rows if isinstance(r, dict) and "layer" in r and "neuron" in r]


def load_ranking(path: str | Path) -> Ranking | None:
    """Parse a ``top_neurons*``, ``influence_*`` or ``signatures_*`` JSON; None if it is not one."""
    p = Path(path)
    data = _read_json(p)
    if data is None:
        return None
    kind = str(data.get("kind") or _kind_from_name(p.name))
    rows = _rows(data)
    neurons = []
    for i, r in enumerate(rows):
        if kind == "influence":
            score = float(r.get("influence", r.get("score", 0.0)))
            label = str(r.get("token_ascii", r.get("token", "")))
        elif kind == "signatures":
            score = float(r.get("influence", r.get("score", 0.0)) or 0.0)
            label = f"{r.get('class') or ''}: {r.get('name') or ''}".strip(": ")
        else:
            score = float(r.get("mean_peak_abs", r.get("score", 0.0)))
            label = str(r.get("mode_peak_token_ascii", ""))
        neurons.append(
            RankedNeuron(
                int(r.get("rank", i + 1)), int(r["layer"]), int(r["neuron"]), score, label, r
            )
        )
    meta = {k: v for k, v in data.items() if k not in ("neurons", "records", "top_neurons")}
    return Ranking(p, kind, _title(kind, p, meta), neurons, meta)


def _kind_from_name(name: str) -> str:
    for kind in ("influence", "signatures", "write_scores", "supernodes"):
        if name.startswith(kind):
            return kind
    return "top_neurons"


def _title(kind: str, path: Path, meta: dict[str, Any]) -> str:
    if kind == "influence":
        return (
            f"influence {meta.get('prompt_id', '?')} {meta.get('metric', '')} "
            f"{meta.get('target_mode', '')}"
        ).strip()
    return path.stem


def list_rankings(folder: str | Path) -> list[Ranking]:
    """Every ranking in an analysis folder: peaks first, then influence, then signatures."""
    d = Path(folder)
    if not d.is_dir():
        return []
    order = {"top_neurons": 0, "influence": 1, "signatures": 2}
    out = []
    for p in sorted(d.glob("*.json")):
        if p.name.endswith("_meta.json") or p.name == "analysis_meta.json":
            continue
        if not p.name.startswith(("top_neurons", "influence_", "signatures_")):
            continue
        r = load_ranking(p)
        if r is not None and r.kind in order:
            out.append(r)
    # top_neurons.json is a copy of the latest tagged top_neurons_<tag>.json: list it once.
    tagged = {r.name for r in out if r.kind == "top_neurons" and r.name != "top_neurons.json"}
    out = [
        r
        for r in out
        if not (
            r.name == "top_neurons.json"
            and f"top_neurons_{(r.meta.get('selection') or {}).get('tag')}.json" in tagged
        )
    ]
    return sorted(out, key=lambda r: (order[r.kind], r.name))


def load_write_scores(
    folder: str | Path, match: str | Path | None = None
) -> dict[tuple[int, int], dict]:
    """``{(layer, neuron): {"top_pos": [...], "top_neg": [...], "explicit": [...]}}``.

    With ``match`` (an influence/top_neurons file), only write-score files whose ``source`` names
    that file (or its .csv/.parquet twin) are read; otherwise all, newest last (later files win).
    """
    d = Path(folder)
    out: dict[tuple[int, int], dict] = {}
    if not d.is_dir():
        return out
    files = sorted(d.glob("write_scores*.json"), key=lambda p: p.stat().st_mtime)
    for p in files:
        if p.name.endswith("_meta.json"):
            continue
        data = _read_json(p)
        if data is None:
            continue
        # The influence .json, .csv and .parquet of one run share a stem: any of them matches.
        if match is not None and Path(str(data.get("source", ""))).stem != Path(match).stem:
            continue
        for r in _rows(data):
            out[(int(r["layer"]), int(r["neuron"]))] = r.get("write_scores", {})
    return out


SIGNATURES_FILE = "signatures_file"  # key added to each loaded record: the file it came from


def signature_files(folder: str | Path) -> list[Path]:
    """Every ``signatures_*.json`` of a folder (``_meta`` files left out), newest first."""
    d = Path(folder)
    if not d.is_dir():
        return []
    files = [p for p in d.glob("signatures_*.json") if not p.name.endswith("_meta.json")]
    return sorted(files, key=lambda p: (p.stat().st_mtime, p.name), reverse=True)


def load_signatures(
    folder: str | Path, file: str | Path | None = None
) -> dict[tuple[int, int], dict]:
    """``{(layer, neuron): signature dict}``; each dict names its file under ``signatures_file``.

    With ``file`` (a name in ``folder`` or a path) only that file is read; otherwise every
    ``signatures_*.json``, the newest file winning for a neuron listed in several.
    """
    if file is not None:
        path = Path(file) if Path(file).parent != Path(".") else Path(folder) / file
        files = [path]
    else:
        files = signature_files(folder)[::-1]  # oldest first: later files overwrite
    out: dict[tuple[int, int], dict] = {}
    for p in files:
        for r in _rows(_read_json(p) or {}):
            out[(int(r["layer"]), int(r["neuron"]))] = {**r, SIGNATURES_FILE: p.name}
    return out


@dataclass(frozen=True)
class SayXCheck:
    """Whether a Say X neuron's output direction promotes its target token (from write scores).

    Attributes:
        token: the Say X target token (``say_x_token``).
        write_rank: the token's rank among the vocabulary by write score (1 = most promoted), or
            None when write scores were not checked.
        agrees: True when the write scores support the Say X reading, False when they contradict
            it, None when not checked.
    """

    token: str
    write_rank: int | None
    agrees: bool | None

    def describe(self, show: Callable[[str], str] = token_display) -> str:
        """E.g. ``Say ' Austin' · write scores: promoted #3 ✓`` (``show`` renders the token)."""
        head = f"Say '{show(self.token)}' · write scores: "
        if self.write_rank is None or self.agrees is None:
            rank = "" if self.write_rank is None else f" (rank {self.write_rank:,})"
            return head + "not checked" + rank
        if self.agrees:
            return head + f"promoted #{self.write_rank:,} ✓"
        return head + f"rank {self.write_rank:,} ✗"


def say_x_check(sig: dict[str, Any] | None) -> SayXCheck | None:
    """The Say X write-score check of a signature record; None when it names no Say X token.

    Reads ``say_x_token``, ``say_x_write_rank`` and ``say_x_write_agrees`` with ``.get`` so files
    written before these fields existed still load.
    """
    token = (sig or {}).get("say_x_token")
    if not isinstance(token, str) or not token:
        return None
    rank, agrees = sig.get("say_x_write_rank"), sig.get("say_x_write_agrees")  # type: ignore[union-attr]
    try:
        rank = None if rank is None else int(rank)
    except (TypeError, ValueError):
        rank = None
    return SayXCheck(token, rank, agrees if isinstance(agrees, bool) else None)


def causal_check_values(record: dict[str, Any]) -> tuple[float, float] | None:
    """``(real_delta, predicted_delta)`` of an influence record whose causal check ran, else None.

    ``--verify_top N`` checks only the first N records: the others carry None (NaN in the CSV) or
    no such keys. None unless both values are finite numbers.
    """
    out = []
    for key in ("real_delta", "predicted_delta"):
        value = record.get(key)
        if isinstance(value, bool) or not isinstance(value, int | float | str):
            return None
        try:
            x = float(value)
        except ValueError:
            return None
        if not math.isfinite(x):
            return None
        out.append(x)
    return out[0], out[1]


def write_json(path: Path, obj: dict[str, Any]) -> None:
    """Atomic JSON write (temporary name, then rename)."""
    from ..store.atomic import atomic_write_json

    atomic_write_json(path, obj)
