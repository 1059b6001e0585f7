"""Streamlit caches of the web app: the run handle and the analysis files, shared by all sessions.

The run is keyed by its folder (and the manifest's mtime, so a finished dump is picked up); changing
a widget reruns the script but finds the same :class:`RunView`, so activations are never reloaded.
"""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from ..analysis.results import Ranking
from .runview import Analysis, RunView, folder_stamp, load_analysis, load_view
from .selection import InfluenceTable


def run_key(run_dir: str) -> tuple[str, int]:
    """``(absolute folder, manifest mtime_ns)``: the cache key of a run folder."""
    path = Path(run_dir).expanduser().resolve()
    try:
        stamp = (path / "manifest.json").stat().st_mtime_ns
    except OSError:
        stamp = 0
    return str(path), stamp


@st.cache_resource(show_spinner="Opening the run...", max_entries=8)
def _view(run_dir: str, stamp: int) -> RunView:
    del stamp  # part of the cache key only
    return load_view(run_dir)


def get_view(run_dir: str) -> RunView:
    """The cached :class:`RunView` of ``run_dir`` (errors are raised, never cached)."""
    return _view(*run_key(run_dir))


@st.cache_resource(show_spinner=False, max_entries=16)
def _analysis(folder: str, stamp: tuple) -> Analysis:
    del stamp
    return load_analysis(folder)


def get_analysis(folder: str) -> Analysis:
    """The cached rankings, write scores and signatures of an analysis folder."""
    path = str(Path(folder).expanduser().resolve())
    return _analysis(path, folder_stamp(path))


@st.cache_resource(show_spinner=False, max_entries=32)
def _table(path: str, stamp: tuple, _ranking: Ranking) -> InfluenceTable:
    del path, stamp
    return InfluenceTable.from_ranking(_ranking)


def get_influence_table(ranking: Ranking) -> InfluenceTable:
    """The records of an influence ranking as arrays (built once per file version)."""
    try:
        s = ranking.path.stat()
        stamp: tuple = (s.st_mtime_ns, s.st_size)
    except OSError:
        stamp = ()
    return _table(str(ranking.path), stamp, ranking)
