"""Streamlit caches of the web app: the run handle, the analysis files, the opened atlas and the
model that text search runs, shared by all sessions.

A run or an atlas is keyed by its folder (and its manifest's mtime, so a finished dump or build is
picked up); changing a widget reruns the script but finds the same :class:`RunView` or
:class:`~neuron_signatures.atlas.Atlas`, so nothing is reopened. The model is loaded on the first
text search only (torch is imported then, never at page load).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import streamlit as st

from ..analysis.results import Ranking
from ..atlas import Atlas, open_atlas
from .runview import Analysis, RunView, folder_stamp, load_analysis, load_view
from .selection import InfluenceTable


def run_key(run_dir: str, manifest: str = "manifest.json") -> tuple[str, int]:
    """``(absolute folder, manifest mtime_ns)``: the cache key of a run (or atlas) folder."""
    path = Path(run_dir).expanduser().resolve()
    try:
        stamp = (path / manifest).stat().st_mtime_ns
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


@st.cache_resource(show_spinner="Opening the atlas...", max_entries=4)
def _atlas(root: str, stamp: int) -> Atlas:
    del stamp
    return open_atlas(root)


def get_atlas(path: str) -> Atlas:
    """The cached :class:`~neuron_signatures.atlas.Atlas` of a folder (errors are not cached)."""
    return _atlas(*run_key(path, "atlas.json"))


@st.cache_resource(show_spinner="Loading the atlas's model (once)...", max_entries=1)
def _model(root: str, stamp: int, _atlas: Atlas) -> Any:
    del root, stamp
    from ..atlas import search

    return search.load_atlas_model(_atlas)


def get_atlas_model(atlas: Atlas) -> Any:
    """The atlas's model for text search, loaded once per atlas and shared by every session."""
    return _model(*run_key(str(atlas.root), "atlas.json"), atlas)
