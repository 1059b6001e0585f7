"""Export atlas neurons in Neuronpedia's bulk-import layout (the files its importer reads).

The layout is that of Neuronpedia's own exports (``utils/neuronpedia-utils/.../export-data.py`` and
``convert-saedashboard-to-neuronpedia-export.py`` in ``hijohnnylin/neuronpedia``), read back by its
``/api/admin/import`` route::

    <out_dir>/<model_id>/<layer>/           one source per layer
        model.jsonl  sourceset.jsonl  source.jsonl      one row each (plain JSON lines)
        features/batch-<N>.jsonl.gz                     one ``Neuron`` row per neuron
        activations/batch-<N>.jsonl.gz                  their ``Activation`` rows

MLP neurons are Neuronpedia's ``neurons`` source set, whose source id is the bare layer number
(``isNeuronLayerSource`` in its ``lib/utils/source.ts``): rows say ``layer: "17"``,
``index: "345"``.

1. Group the neurons by layer, sort by index and cut them into batches of ``batch_size``; batch
   ``N`` (from 0) of a layer holds the same neurons in ``features/`` and ``activations/``.
2. Per neuron, read ``atlas.neuron(l, n)`` and map it: write scores -> ``pos_str/pos_values`` and
   ``neg_str/neg_values``, the positive side of the exact histogram -> ``freq_hist_data_*`` (bar
   heights = counts, bar values = bin centres), ``stats.max`` -> ``maxActApprox``; each top
   example -> an activation with ``dataSource: "top"``, ``binMin = -1``, ``binMax =`` its value,
   ``binContains = -1`` (the converter's "TOP ACTIVATIONS" group); each interval sample -> an
   activation with the interval's ``binMin/binMax`` and share of tokens ``binContains``, whose
   ``maxValue``/``maxValueTokenIndex`` are the sample's own value and position (Neuronpedia centres
   the snippet there); each bottom example -> an activation with ``dataSource: "bottom"``
   (Neuronpedia's ``BOTTOM_ACTIVATION_DATA_SOURCE`` in ``components/activation-item.tsx``: it
   centres the snippet on the most negative value), ``maxValue`` its (negative) value, no bins.
3. Gzip each batch, write it, drop it (memory: one batch). A layer is written into a temporary
   sibling folder, its metadata rows last, then renamed into place: an interrupted export never
   leaves a source folder that looks complete, and a re-export replaces the old one whole.
4. When the atlas holds explanations (``neuron-signatures explain``), batch ``N`` also gets
   ``explanations/batch-<N>.jsonl.gz``: one ``Explanation`` row per explained side of its
   neurons, holding only that table's columns (:mod:`.neuronpedia_explanations`), and the source
   folder gets the ``ExplanationType`` / ``ExplanationModelType`` rows its ``typeName`` /
   ``explanationModelName`` name and ``explanation_scores.jsonl``: Neuronpedia's importer does
   not bulk-load scores (its ``ExplanationScore`` rows need a scorer model and a user of its own
   database), so every score, floor included, is in that side file.
"""

from __future__ import annotations

import hashlib
import math
import os
import re
import shutil
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from ..atlas.reader import Atlas
from ..atlas.record import Example, NeuronAtlas
from ..errors import BadArgumentError
from ..store.atomic import atomic_write_bytes
from ..store.manifest import HOOK_TEMPLATE
from ..tokens import SPIECE_SPACE
from .explanation_rows import has_explanations
from .neuronpedia_rows import CREATOR_ID, CREATOR_NAME, Row, jsonl_bytes, write_jsonl_gz

if TYPE_CHECKING:
    from .neuronpedia_explanations import ExplanationWriter

NEURONS_SOURCESET = "neurons"  # Neuronpedia's source set of model neurons
TOP_BIN = -1.0  # binMin / binContains of a top activation (SAEDashboard's converter)
TOP_SOURCE, BOTTOM_SOURCE = "top", "bottom"  # Activation.dataSource values Neuronpedia reads
MODEL_ID_RE = re.compile(r"^[a-z0-9_-]+$")  # Neuronpedia's Model.id rule (lower-cased)


def model_slug(name: str) -> str:
    """Neuronpedia model id of a model name: ``google/gemma-2-2b`` -> ``gemma-2-2b``."""
    base = Path(name.rstrip("/")).name or name
    slug = re.sub(r"[^a-z0-9_-]+", "-", base.lower()).strip("-")
    return slug or "model"


def export_neuronpedia(
    atlas: Atlas,
    neurons: Sequence[tuple[int, int]],
    out_dir: Path,
    *,
    model_id: str | None = None,
    batch_size: int = 128,
    progress: Callable[[int], None] | None = None,
    explanations: bool = True,
) -> Path:
    """Write the layout under ``out_dir``; returns the model folder. ``progress(n)`` is called
    with the number of neurons just finished. ``model_id`` defaults to a slug of the atlas's
    model name (e.g. ``google/gemma-2-2b`` -> ``gemma-2-2b``). ``explanations``: add the
    atlas's explanations when it has some (rule 4).

    Raises:
        BadArgumentError: no neurons, a neuron not in the atlas, a bad model id or batch size,
            or ``out_dir`` is a file.
    """
    mid = model_slug(atlas.model_name) if model_id is None else model_id
    by_layer = _check(atlas, neurons, Path(out_dir), mid, batch_size)
    model_dir = Path(out_dir) / mid
    expl = None
    if explanations and has_explanations(atlas.root):
        from .neuronpedia_explanations import ExplanationWriter

        expl = ExplanationWriter(atlas.root, neurons, mid)
    for layer, indices in by_layer.items():
        _write_source(atlas, mid, layer, indices, model_dir, batch_size, progress, expl)
    return model_dir


def _check(
    atlas: Atlas, neurons: Sequence[tuple[int, int]], out_dir: Path, mid: str, batch_size: int
) -> dict[int, list[int]]:
    """``{layer: sorted unique indices}`` once every argument is valid."""
    if out_dir.exists() and not out_dir.is_dir():
        raise BadArgumentError(f"--out_dir {out_dir} is a file: give a folder")
    if not MODEL_ID_RE.match(mid):
        raise BadArgumentError(
            f"model id {mid!r}: use lower-case letters, digits, '-' and '_' only (Neuronpedia)"
        )
    if batch_size < 1:
        raise BadArgumentError(f"batch size {batch_size}: use 1 or more")
    return group_neurons(atlas, neurons)


def group_neurons(atlas: Atlas, neurons: Sequence[tuple[int, int]]) -> dict[int, list[int]]:
    """``{layer: sorted unique indices}`` of neurons the atlas holds (layers ascending).

    Raises:
        BadArgumentError: no neurons, or a layer / index not in the atlas.
    """
    if not neurons:
        raise BadArgumentError("no neurons to export: pick some with --neurons or --layers")
    by_layer: dict[int, set[int]] = {}
    for layer, index in neurons:
        if layer not in atlas.layers:
            raise BadArgumentError(
                f"layer {layer} is not in the atlas {atlas.root} (layers {atlas.layers})"
            )
        if not 0 <= index < atlas.d_mlp:
            raise BadArgumentError(f"neuron {index} is out of range 0..{atlas.d_mlp - 1}")
        by_layer.setdefault(int(layer), set()).add(int(index))
    return {layer: sorted(by_layer[layer]) for layer in sorted(by_layer)}


def _write_source(
    atlas: Atlas,
    mid: str,
    layer: int,
    indices: list[int],
    model_dir: Path,
    batch_size: int,
    progress: Callable[[int], None] | None,
    expl: ExplanationWriter | None = None,
) -> None:
    """One layer's source folder, built aside and renamed into place."""
    source = str(layer)
    model_dir.mkdir(parents=True, exist_ok=True)
    tmp = model_dir / f".{source}.partial-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        for b, start in enumerate(range(0, len(indices), batch_size)):
            chunk = indices[start : start + batch_size]
            features: list[Row] = []
            acts: list[Row] = []
            for index in chunk:
                rec = atlas.neuron(layer, index)
                features.append(feature_row(rec, mid))
                acts.extend(activation_rows(rec, mid))
            write_jsonl_gz(tmp / "features" / f"batch-{b}.jsonl.gz", features)
            write_jsonl_gz(tmp / "activations" / f"batch-{b}.jsonl.gz", acts)
            if expl is not None:
                write_jsonl_gz(
                    tmp / "explanations" / f"batch-{b}.jsonl.gz", expl.rows(layer, chunk)
                )
            if progress is not None:
                progress(len(chunk))
        for name, row in (
            ("model.jsonl", model_row(atlas, mid)),
            ("sourceset.jsonl", sourceset_row(mid)),
            ("source.jsonl", source_row(atlas, mid, layer)),
        ):
            atomic_write_bytes(tmp / name, jsonl_bytes([row]))
        if expl is not None:
            expl.write_side_files(tmp, layer)
        _replace_dir(tmp, model_dir / source)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _replace_dir(new: Path, target: Path) -> None:
    """Rename ``new`` to ``target``, moving an old ``target`` aside first and removing it after."""
    old = target.with_name(f".{target.name}.old-{os.getpid()}")
    if target.exists():
        shutil.rmtree(old, ignore_errors=True)
        target.rename(old)
    new.rename(target)
    shutil.rmtree(old, ignore_errors=True)


def _num(x: float) -> float:
    """A JSON-safe float: NaN and infinities (an empty neuron's statistics) become 0."""
    return float(x) if math.isfinite(x) else 0.0


def np_token(piece: str) -> str:
    """The token as Neuronpedia shows it: decoded text, ``▁`` as a space."""
    return piece.replace(SPIECE_SPACE, " ")


def feature_row(rec: NeuronAtlas, mid: str) -> Row:
    """The ``Neuron`` row of one atlas neuron."""
    heights, values = positive_histogram(rec)
    return {
        "modelId": mid,
        "layer": str(rec.layer),
        "index": str(rec.index),
        "sourceSetName": NEURONS_SOURCESET,
        "creatorId": CREATOR_ID,
        "maxActApprox": _num(rec.stats.max),
        "hasVector": False,
        "vector": [],
        "hookName": HOOK_TEMPLATE.format(l=rec.layer),
        "pos_str": [np_token(w.token) for w in rec.write_top],
        "pos_values": [_num(w.score) for w in rec.write_top],
        "neg_str": [np_token(w.token) for w in rec.write_bottom],
        "neg_values": [_num(w.score) for w in rec.write_bottom],
        # Neuronpedia's "fraction of tokens where the feature fires": a GeGLU neuron is signed,
        # so this is the share of tokens where it is > 0 (stats.frac_positive).
        "frac_nonzero": _num(rec.stats.frac_positive),
        "freq_hist_data_bar_heights": heights,
        "freq_hist_data_bar_values": values,
        "logits_hist_data_bar_heights": [],
        "logits_hist_data_bar_values": [],
    }


def positive_histogram(rec: NeuronAtlas) -> tuple[list[float], list[float]]:
    """``(bar heights, bar values)``: the exact counts of the non-empty bins at or above zero
    and their centres (the open last bin, and any bin the maximum falls in, end at the max)."""
    edges, counts = rec.histogram_edges, rec.histogram_counts
    zero = edges.index(0.0)  # bins i >= zero + 1 are [edges[i-1], edges[i])
    heights, values = [], []
    for i in range(zero + 1, len(counts)):
        if counts[i] <= 0:
            continue
        lo = edges[i - 1]
        hi = edges[i] if i < len(edges) else rec.stats.max
        hi = min(hi, rec.stats.max) if math.isfinite(rec.stats.max) else hi
        heights.append(float(counts[i]))
        values.append(_num((lo + max(hi, lo)) / 2))
    return heights, values


def activation_rows(rec: NeuronAtlas, mid: str) -> Iterator[Row]:
    """The ``Activation`` rows of one neuron: top examples, interval samples (highest interval
    first), then bottom examples (most negative first)."""
    for k, ex in enumerate(rec.top):
        yield activation_row(rec, mid, ex, f"top{k}", (TOP_BIN, ex.value, TOP_BIN), TOP_SOURCE)
    for i, iv in reversed(list(enumerate(rec.intervals))):
        for k, ex in enumerate(iv.samples):
            yield activation_row(rec, mid, ex, f"interval{i}.{k}", (iv.lo, iv.hi, iv.fraction))
    for k, ex in enumerate(rec.bottom):
        yield activation_row(rec, mid, ex, f"bottom{k}", None, BOTTOM_SOURCE)


def activation_row(
    rec: NeuronAtlas,
    mid: str,
    ex: Example,
    tag: str,
    bins: tuple[float, float, float] | None,
    source: str | None = None,
) -> Row:
    """One example as an ``Activation`` row; ``bins`` is ``(binMin, binMax, binContains)``
    (None: no bin), ``source`` its ``dataSource`` (None: none).

    ``maxValue``/``maxValueTokenIndex``: a top example's window maximum; otherwise the example's
    own value and position: a bottom example's (Neuronpedia sorts bottom rows by ``maxValue``,
    lowest first) and an interval sample's, which stores only its own token's value (the others
    are written as 0, so the window's maximum would point at an unsampled token); ``minValue`` is
    the smallest stored value.
    """
    if ex.acts is not None:
        values = [_num(v) for v in ex.acts[: len(ex.tokens)]]
        stored = values
    else:
        values = [0.0] * len(ex.tokens)
        values[ex.position] = _num(ex.value)
        stored = [values[ex.position]]
    if source == TOP_SOURCE:
        top = max(values)
        at = values.index(top)
    else:
        top, at = _num(ex.value), ex.position
    key = f"{mid}/{rec.layer}/{rec.index}/{tag}".encode()
    row: Row = {
        "id": "c" + hashlib.sha1(key).hexdigest()[:24],  # cuid-like, the same on every export
        "modelId": mid,
        "layer": str(rec.layer),
        "index": str(rec.index),
        "creatorId": CREATOR_ID,
        "tokens": [np_token(t) for t in ex.tokens],
        "values": values,
        "maxValue": top,
        "maxValueTokenIndex": at,
        "minValue": min(stored),
        "qualifyingTokenIndex": ex.position,  # the token that put the window in its bin
    }
    if bins is not None:
        row.update(binMin=_num(bins[0]), binMax=_num(bins[1]), binContains=_num(bins[2]))
    if source is not None:
        row["dataSource"] = source
    return row


def model_row(atlas: Atlas, mid: str) -> Row:
    owner = atlas.model_name.split("/")[0] if "/" in atlas.model_name else CREATOR_NAME
    return {
        "id": mid,
        "displayNameShort": mid,
        "displayName": atlas.model_name,
        "creatorId": CREATOR_ID,
        "tlensId": atlas.model_name,
        "visibility": "PUBLIC",
        "inferenceEnabled": False,
        "instruct": mid.endswith("-it"),
        "layers": atlas.n_layers,
        "neuronsPerLayer": atlas.d_mlp,
        "owner": owner,
    }


def sourceset_row(mid: str) -> Row:
    return {
        "modelId": mid,
        "name": NEURONS_SOURCESET,
        "hasDashboards": True,
        "visibility": "PUBLIC",
        "description": f"MLP neurons ({HOOK_TEMPLATE})",
        "type": "",
        "creatorName": CREATOR_NAME,
        "urls": [],
        "creatorId": CREATOR_ID,
    }


def source_row(atlas: Atlas, mid: str, layer: int) -> Row:
    corpus = atlas.manifest.get("corpus", {})
    windows = atlas.manifest.get("windows", {})
    return {
        "id": str(layer),
        "modelId": mid,
        "setName": NEURONS_SOURCESET,
        "hasDashboards": True,
        "inferenceEnabled": False,
        "visibility": "PUBLIC",
        "creatorId": CREATOR_ID,
        "dataset": str(corpus.get("source", "")),
        "num_prompts": int(windows.get("n_windows", corpus.get("n_windows", 0))),
        "num_tokens_in_prompt": atlas.ctx_len,
        "notes": (
            f"neuron-signatures atlas of {atlas.model_name}: {atlas.tokens_seen} tokens in "
            f"windows of {atlas.ctx_len}; hook {HOOK_TEMPLATE.format(l=layer)}"
        ),
    }
