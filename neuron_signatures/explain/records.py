"""One neuron's explanations for the neuron pages, read fast: per-layer records cached, the
simulated activations of a window, and per-layer score distributions.

Every UI (the ``neuron`` command, the terminal atlas view, the web neuron page) reads
``<atlas>/explanations/`` through these functions (layout: :mod:`.output`):

1. :func:`neuron_explanation` reads the neuron's layer file once (one ``jsonl`` line per neuron,
   sorted by neuron) and keeps its lines in a small cache keyed by the file's path, size and
   mtime, so moving from neuron to neuron in a layer reads nothing again and a rerun of
   ``explain`` is seen. Only the neuron's own line is parsed: line ``n`` when it is neuron ``n``,
   else a bisection (a 20 MB layer of Gemma 2 2B opens in tens of ms instead of a second).
2. :func:`simulated_row` applies the neuron's lookup table (``layer_NNN.tables.safetensors``, the
   simulator itself) to token ids with :func:`.lookup.simulate`, on the activation scale (the
   negative side's means are stored negated: they are negated back).
3. :func:`heldout_examples` are the atlas's top (bottom) examples the explainer never saw, the
   windows the record lists under ``heldout.example_windows``: their activations are stored in
   the atlas, so the real row under a simulated one is exact and costs no forward. The random
   windows' activations come from the score-time forward and are not stored.
4. :func:`layer_scores` summarises every layer: median score, share ≥ 0.5 and the floor's median.

The LLM explainer writes the same record layout to ``<atlas>/explanations-llm/`` (no lookup
tables): :func:`neuron_explanations` reads both folders (``folder`` picks one elsewhere).

No torch at import.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..atlas import Example, NeuronAtlas
from .lookup import LookupTable, simulate
from .output import FOLDER, MANIFEST, layer_path, read_manifest, read_tables

SCORE_NAMES = {"top_and_random": "top-and-random", "random_only": "random-only"}
LLM_FOLDER = "explanations-llm"  # :data:`.llm_run.FOLDER`, named here to import no client
FOLDERS = (FOLDER, LLM_FOLDER)


@dataclass(frozen=True)
class NeuronExplanation:
    """The explanation record of one neuron (``sides``: the record's per-side dicts, see
    :mod:`.output`) and the run's explainer parameters."""

    layer: int
    neuron: int
    sides: list[dict[str, Any]]
    explainer: dict[str, Any]
    folder: str = FOLDER
    error: str | None = None  # the LLM run's per-neuron error (then no sides)

    def side(self, name: str) -> dict[str, Any] | None:
        return next((s for s in self.sides if s["side"] == name), None)

    def to_dict(self) -> dict[str, Any]:
        out = {"explainer": self.explainer, "sides": self.sides}
        return out if self.error is None else {**out, "error": self.error}


def has_explanations(atlas_root: str | Path, folder: str = FOLDER) -> bool:
    """``<atlas>/<folder>/explanations.json`` exists."""
    return (Path(atlas_root) / folder / MANIFEST).is_file()


@functools.lru_cache(maxsize=4)
def _manifest(root: str, folder: str, mtime_ns: int) -> dict[str, Any]:
    return read_manifest(Path(root) / folder)


@functools.lru_cache(maxsize=8)
def _layer_lines(path: str, size: int, mtime_ns: int) -> list[str]:
    return Path(path).read_text(encoding="utf-8").splitlines()


@functools.lru_cache(maxsize=4)
def _layer_records(path: str, size: int, mtime_ns: int) -> dict[int, dict[str, Any]]:
    return {int(r["neuron"]): r for r in map(json.loads, _layer_lines(path, size, mtime_ns))}


def _find(lines: list[str], neuron: int) -> dict[str, Any] | None:
    """The record of ``neuron`` among ``lines`` (sorted by neuron), parsing ~log2(n) lines."""
    if 0 <= neuron < len(lines):
        rec = json.loads(lines[neuron])
        if rec["neuron"] == neuron:
            return dict(rec)
    lo, hi = 0, len(lines)
    while lo < hi:
        mid = (lo + hi) // 2
        rec = json.loads(lines[mid])
        if rec["neuron"] == neuron:
            return dict(rec)
        lo, hi = (mid + 1, hi) if rec["neuron"] < neuron else (lo, mid)
    return None


@functools.lru_cache(maxsize=4)
def _tables(root: str, layer: int, mtime_ns: int) -> dict[str, LookupTable]:
    return read_tables(root, layer)


def manifest(atlas_root: str | Path, folder: str = FOLDER) -> dict[str, Any]:
    """The explanations' manifest (cached; :class:`RunFormatError` when unreadable)."""
    path = Path(atlas_root) / folder / MANIFEST
    return _manifest(str(atlas_root), folder, path.stat().st_mtime_ns if path.is_file() else 0)


def neuron_explanation(
    atlas_root: str | Path, layer: int, neuron: int, folder: str = FOLDER
) -> NeuronExplanation | None:
    """The explanations of ``L{layer}/N{neuron}`` in ``<atlas>/<folder>``; ``None`` when the
    atlas has none, the layer was not explained (yet) or the neuron has no explanation on either
    side (an LLM run's per-neuron error comes back with no sides and ``error``).

    Raises:
        RunFormatError: the explanations' manifest is unreadable or of another version.
    """
    if not has_explanations(atlas_root, folder):
        return None
    m = manifest(atlas_root, folder)
    path = layer_path(Path(atlas_root) / folder, layer)
    if not path.is_file():
        return None
    st = path.stat()
    rec = _find(_layer_lines(str(path), st.st_size, st.st_mtime_ns), neuron)
    if rec is None or not (rec.get("sides") or rec.get("error")):
        return None
    explainer = dict(m["params"].get("explainer", {}))
    return NeuronExplanation(layer, neuron, list(rec["sides"]), explainer, folder, rec.get("error"))


def neuron_explanations(
    atlas_root: str | Path, layer: int, neuron: int
) -> dict[str, NeuronExplanation | None]:
    """Per folder of :data:`FOLDERS` the atlas has, :func:`neuron_explanation`."""
    return {
        f: neuron_explanation(atlas_root, layer, neuron, f)
        for f in FOLDERS
        if has_explanations(atlas_root, f)
    }


def _fmt(x: float | None) -> str:
    return "n/a" if x is None else f"{x:+.3f}"


def score_lines(side: dict[str, Any]) -> list[str]:
    """``top-and-random +0.953 (floor +0.012, 31 tokens)`` and the random-only line of a side,
    then one line per LLM classifier scorer the side holds (detection, fuzzing)."""
    ho = side["heldout"]
    sizes = {"top_and_random": ho["tokens_top_and_random"], "random_only": ho["tokens_random_only"]}
    lines = [
        f"{name} {_fmt(side['scores'][key])} (floor {_fmt(side['floor'][key])} from "
        f"N{side['floor']['from_neuron']}; {sizes[key]} held-out tokens)"
        for key, name in SCORE_NAMES.items()
    ]
    return lines + classifier_lines(side)


def classifier_lines(side: dict[str, Any]) -> list[str]:
    """``detection: balanced accuracy 0.900 (floor 0.500 from N7), AUC 0.950 (floor 0.480);
    10+10 held-out windows, logprobs`` per scorer of an LLM side (none for older records)."""
    out = []
    for kind, c in (side.get("classifiers") or {}).items():
        fl, n = c["floor"], c["n_windows"]
        auc = (
            f"AUC {_fmt3(c['auc'])} (floor {_fmt3(fl['auc'])})"
            if c["method"] == "logprobs"
            else "AUC unavailable (no logprobs)"
        )
        out.append(
            f"{kind}: balanced accuracy {_fmt3(c['balanced_accuracy'])} (floor "
            f"{_fmt3(fl['balanced_accuracy'])} from N{fl['from_neuron']}), {auc}; "
            f"{n['activating']}+{n['non_activating']} held-out windows, {c['method']}"
        )
    return out


def _fmt3(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.3f}"


def simulated_row(
    atlas_root: str | Path, layer: int, neuron: int, side: str, token_ids: np.ndarray
) -> np.ndarray:
    """``[n]`` float64: the simulator of ``side`` applied to ``token_ids`` ``[n]``, on the
    activation scale (negative for the negative side). Zeros when the side has no table."""
    path = layer_path(Path(atlas_root) / FOLDER, layer).with_suffix(".tables.safetensors")
    tables = _tables(str(atlas_root), layer, path.stat().st_mtime_ns if path.is_file() else 0)
    ids = np.asarray(token_ids, dtype=np.int64)
    if side not in tables:
        return np.zeros(len(ids), np.float64)
    pred = simulate(tables[side].take(np.array([neuron])), ids)[0]
    return pred if side == "positive" else -pred


def heldout_examples(rec: NeuronAtlas, side: dict[str, Any]) -> list[Example]:
    """The atlas examples of ``side`` the explainer never saw (their windows are the record's
    ``heldout.example_windows``), best first."""
    windows = set(side["heldout"]["example_windows"])
    pool = rec.top if side["side"] == "positive" else rec.bottom
    return [ex for ex in pool if ex.window in windows]


@dataclass(frozen=True)
class LayerScores:
    """The scores of one layer and side: ``n`` explained neurons, the median score and the
    share ≥ 0.5 (of the neurons whose score is defined), the same for the floors."""

    layer: int
    side: str
    n: int
    median: float
    share_ge_half: float
    floor_median: float
    floor_share_ge_half: float
    scores: np.ndarray
    floors: np.ndarray


def _val(x: float | None) -> float:
    return float("nan") if x is None else float(x)


def _summary(v: np.ndarray) -> tuple[float, float]:
    v = v[np.isfinite(v)]
    return (float(np.median(v)), float(np.mean(v >= 0.5))) if len(v) else (np.nan, np.nan)


def layer_scores(atlas_root: str | Path, score: str = "top_and_random") -> list[LayerScores]:
    """Per explained layer and side, the distribution of ``score`` against its floor."""
    out = []
    for layer in manifest(atlas_root)["params"]["layers"]:
        path = layer_path(Path(atlas_root) / FOLDER, layer)
        if not path.is_file():
            continue
        st = path.stat()
        recs = _layer_records(str(path), st.st_size, st.st_mtime_ns).values()
        for name in ("positive", "negative"):
            sides = [s for r in recs for s in r["sides"] if s["side"] == name]
            if not sides:
                continue
            sc = np.array([_val(s["scores"][score]) for s in sides], np.float64)
            fl = np.array([_val(s["floor"][score]) for s in sides], np.float64)
            med, share = _summary(sc)
            fmed, fshare = _summary(fl)
            out.append(LayerScores(layer, name, len(sides), med, share, fmed, fshare, sc, fl))
    return out


@functools.lru_cache(maxsize=2)
def _windows(root: str) -> Any:
    from ..atlas import open_atlas
    from .split import read_windows

    return read_windows(open_atlas(root))


def random_windows(atlas_root: str | Path, side: dict[str, Any]) -> list[int]:
    """The score-time random windows that scored ``side`` (the run's, less the excluded)."""
    excluded = set(side["heldout"]["random_windows_excluded"])
    return [int(w) for w in manifest(atlas_root)["random_windows"] if w not in excluded]


def window_token_ids(atlas_root: str | Path, window: int) -> np.ndarray:
    """``[length]`` token ids of atlas window ``window`` (BOS included)."""
    win = _windows(str(atlas_root))
    return np.asarray(win.tokens[window, : int(win.lengths[window])], np.int64)


def real_window_row(
    atlas_root: str | Path, lm: Any, layer: int, neuron: int, window: int
) -> np.ndarray:
    """``[length]`` the neuron's activations over atlas window ``window``, recomputed with
    ``lm`` by the score-time forward itself (:func:`.forward.score_time_forward`, one window);
    NaN on a position the atlas does not count (BOS without ``include_bos``)."""
    from .forward import counted_tokens, score_time_forward

    win = _windows(str(atlas_root))
    wins = np.array([window], np.int64)
    got = score_time_forward(lm, win, wins, [layer], batch_size=1).layer_acts(layer)[:, neuron]
    _, pos = counted_tokens(win, wins)
    row = np.full(int(win.lengths[window]), np.nan)
    row[pos] = got.astype(np.float64)
    return row
