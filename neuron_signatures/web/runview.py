"""What the web app reads from a run and its analysis folder (Streamlit-free, torch-free).

A :class:`RunView` wraps an opened :class:`~neuron_signatures.store.Run` with the prompts laid out
back to back (``starts``, ``lengths``, a BOS mask) so one neuron's values across the run are a
single ``[n_tokens]`` array and every per-prompt statistic is one numpy reduction.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..analysis.results import (
    Ranking,
    list_rankings,
    load_signatures,
    load_write_scores,
    signature_files,
)
from ..store import Run, open_run
from .heatmap import segment_max

BOS_TOKENS = frozenset({"<bos>", "<s>", "<|begin_of_text|>"})
NEURON_CACHE_SIZE = 16


@dataclass(frozen=True)
class PromptPeaks:
    """Per prompt ``[n_prompts]``: where one neuron's ``|v|`` peaks (BOS excluded) and the value."""

    ctx_idx: np.ndarray
    value: np.ndarray
    abs_max: np.ndarray


class RunView:
    """A run opened for the app: flat token layout plus a small cache of neuron columns."""

    def __init__(self, run: Run) -> None:
        self.run = run
        self.lengths = np.array([p.seq_len for p in run.prompts], dtype=np.int64)
        self.starts = np.concatenate([[0], np.cumsum(self.lengths)[:-1]]).astype(np.int64)
        self.n_tokens = int(self.lengths.sum())
        first = np.zeros(self.n_tokens, dtype=bool)
        if run.prepend_bos and self.n_tokens:
            first[self.starts[self.lengths > 0]] = True
        toks = np.array([t for p in run.prompts for t in p.tokens], dtype=object)
        named = np.isin(toks, list(BOS_TOKENS)) if toks.size == self.n_tokens else first
        self.bos_mask = first | named
        self._cache: OrderedDict[tuple[int, int], np.ndarray] = OrderedDict()
        self._lock = threading.Lock()

    @property
    def prompt_ids(self) -> list[str]:
        return [p.probe_id for p in self.run.prompts]

    def neuron_flat(self, layer: int, neuron: int) -> np.ndarray:
        """``[n_tokens]`` float32 values of one neuron over every prompt (cached, read-only)."""
        key = (int(layer), int(neuron))
        with self._lock:
            if key in self._cache:
                self._cache.move_to_end(key)
                return self._cache[key]
        parts = self.run.neuron(*key)
        flat = np.concatenate(parts) if parts else np.empty(0, np.float32)
        flat.setflags(write=False)
        with self._lock:
            self._cache[key] = flat
            while len(self._cache) > NEURON_CACHE_SIZE:
                self._cache.popitem(last=False)
        return flat

    def prompt_slice(self, i: int) -> slice:
        return slice(int(self.starts[i]), int(self.starts[i] + self.lengths[i]))

    def peaks(self, flat: np.ndarray) -> PromptPeaks:
        """Peak ``|v|`` of each prompt (BOS left out unless a prompt has nothing else)."""
        a = np.abs(flat.astype(np.float64))
        a = np.where(np.isfinite(a), a, -1.0)
        masked = np.where(self.bos_mask, -1.0, a)
        seg = segment_max(masked, self.starts, self.lengths)
        only_bos = seg < 0
        if only_bos.any():
            seg = np.where(only_bos, segment_max(a, self.starts, self.lengths), seg)
            masked = np.where(np.repeat(only_bos, self.lengths), a, masked)
        owner = np.repeat(np.arange(len(self.lengths)), self.lengths)
        hits = np.flatnonzero(masked == seg[owner])
        first_owner, first_at = np.unique(owner[hits], return_index=True)
        pos = np.zeros(len(self.lengths), dtype=np.int64)
        pos[first_owner] = hits[first_at]
        value = flat[pos] if flat.size else np.zeros(len(pos), np.float32)
        return PromptPeaks(pos - self.starts, value.astype(np.float64), np.maximum(seg, 0.0))

    def shown_prompts(self, flat: np.ndarray, order: str, limit: int) -> np.ndarray:
        """Prompts to draw: run order or peak ``|v|`` descending, at most ``limit``."""
        idx = np.arange(self.run.n_prompts)
        if order == "peak":
            idx = np.argsort(-self.peaks(flat).abs_max, kind="stable")
        return idx[: max(1, int(limit))]


def load_view(run_dir: str | Path) -> RunView:
    """Open a run folder for the app; domain errors (missing, incomplete, unknown) propagate."""
    return RunView(open_run(run_dir))


def discover_runs(root: str | Path, max_depth: int = 2) -> list[Path]:
    """Run folders (with a ``manifest.json``) under ``root``, up to ``max_depth`` levels down."""
    base = Path(root).expanduser()
    if not base.is_dir():
        return []
    found: list[Path] = []
    frontier = [base]
    for _ in range(max_depth + 1):
        nxt = []
        for d in frontier:
            if (d / "manifest.json").is_file():
                found.append(d)
                continue
            try:
                nxt.extend(sorted(p for p in d.iterdir() if p.is_dir() and p.name[0] != "."))
            except OSError:
                continue
        frontier = nxt
    return sorted(found)


@dataclass
class Analysis:
    """The rankings, write scores and signatures of one analysis folder."""

    folder: Path
    peaks: list[Ranking] = field(default_factory=list)
    influence: list[Ranking] = field(default_factory=list)
    signatures: dict[tuple[int, int], dict[str, Any]] = field(default_factory=dict)
    signature_files: list[str] = field(default_factory=list)  # newest first
    _ws: dict[str, dict[tuple[int, int], dict]] = field(default_factory=dict, repr=False)
    _sigs: dict[str, dict[tuple[int, int], dict]] = field(default_factory=dict, repr=False)
    _peak_rows: dict[tuple[int, int], dict[str, Any]] | None = field(default=None, repr=False)

    def write_scores(self, layer: int, neuron: int, source: Path | None) -> tuple[dict | None, str]:
        """The neuron's write scores, preferring files computed from ``source``.

        Returns ``(scores or None, provenance)`` where provenance says which files were used.
        """
        key = (layer, neuron)
        if source is not None:
            matched = self._load_ws(source.name)
            if key in matched:
                return matched[key], f"computed from {source.name}"
        every = self._load_ws(None)
        if key in every:
            note = "from another write_scores file" if source is not None else "newest file"
            return every[key], note
        return None, ""

    def _load_ws(self, match: str | None) -> dict[tuple[int, int], dict]:
        tag = match or ""
        if tag not in self._ws:
            self._ws[tag] = load_write_scores(self.folder, match=match)
        return self._ws[tag]

    def signatures_in(self, file: str | None) -> dict[tuple[int, int], dict[str, Any]]:
        """The signatures of one ``signatures_*.json`` (by name), or of all of them (``None``:
        the newest file wins); each record names its file under ``signatures_file``."""
        if not file:
            return self.signatures
        if file not in self._sigs:
            self._sigs[file] = load_signatures(self.folder, file)
        return self._sigs[file]

    def peak_row(self, layer: int, neuron: int) -> dict[str, Any] | None:
        """The neuron's row in the first peaks ranking that lists it."""
        if self._peak_rows is None:
            rows: dict[tuple[int, int], dict[str, Any]] = {}
            for r in self.peaks:
                for n in r.neurons:
                    rows.setdefault((n.layer, n.neuron), n.fields)
            self._peak_rows = rows
        return self._peak_rows.get((layer, neuron))


def load_analysis(folder: str | Path) -> Analysis:
    """Read every ranking, plus the signatures, of an analysis folder (missing folder: empty)."""
    d = Path(folder)
    rankings = list_rankings(d)
    return Analysis(
        folder=d,
        peaks=[r for r in rankings if r.kind == "top_neurons"],
        influence=[r for r in rankings if r.kind == "influence"],
        signatures=load_signatures(d),
        signature_files=[p.name for p in signature_files(d)],
    )


def folder_stamp(folder: str | Path) -> tuple[tuple[str, int, int], ...]:
    """``(name, mtime_ns, size)`` of every JSON in a folder: a cache key that changes on rewrite."""
    d = Path(folder)
    if not d.is_dir():
        return ()
    out = []
    for p in sorted(d.glob("*.json")):
        try:
            s = p.stat()
        except OSError:
            continue
        out.append((p.name, s.st_mtime_ns, s.st_size))
    return tuple(out)
