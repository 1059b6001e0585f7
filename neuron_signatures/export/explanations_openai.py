"""Export explanations as OpenAI NeuronSimulationResults: ``{out_dir}/{layer}/{neuron}.jsonl``.

The schema is that of ``openai/automated-interpretability``,
``neuron_explainer/explanations/explanations.py`` (``NeuronSimulationResults`` →
``ScoredExplanation`` → ``ScoredSimulation`` → ``ScoredSequenceSimulation`` →
``SequenceSimulation``), serialised as its ``fast_dataclasses.dumps`` writes it (fields in
declaration order, then ``dataclass_name``; compact orjson), one object on the first line of
``{layer}/{neuron}.jsonl``: the file its ``load_neuron_explanations(path, layer, neuron)`` reads.

1. One ``ScoredExplanation`` per explained side, positive first, the offline explainer's
   (``<atlas>/explanations``) then the LLM's (``<atlas>/explanations-llm``) where both ran.
   OpenAI's format has no sign: the negative side's text says so (``goes negative on ...``) and
   its numbers are on the negated activations, as the score is (:mod:`..explain`).
2. ``scored_simulation.ev_correlation_score`` is the side's ``top_and_random`` score: Pearson's r
   pooled over the held-out top examples and the random windows, OpenAI's preferred score.
3. ``scored_sequence_simulations``: one per held-out example window (the top examples the
   explainer never saw; bottom ones for the negative side), BOS left out unless the atlas counted
   it: ``tokens``, the simulator's prediction per token (``expected_activations``: the lookup
   table's mean for a listed token, else 0, in ``neuron_activations`` units; the distribution is a
   point mass, ``distribution_values [[p]]`` with probability ``[[1.0]]``), ``true_activations``
   (the atlas's, negated for the negative side) and that window's own r. The random windows'
   activations come from the score-time forward and are not stored, so they count in the pooled
   score but are not listed. Only the offline token-lookup simulator can be replayed here: an
   LLM-written side lists no sequences (its per-token predictions are not kept in the records).
4. OpenAI's schema has no floor and no random-only score: every score of every side, floors and
   held-out sizes included, goes to ``explanation_scores.jsonl`` (:mod:`.explanation_rows`).
5. A neuron without an explained side gets no file (OpenAI's loader then returns ``None``).
   Files hold no timestamp: the same explanations give the same bytes.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..store.atomic import atomic_write_bytes
from ..tokens import SPIECE_SPACE
from .explanation_rows import (
    SCORES_FILE,
    Record,
    explained_neurons,
    explainer_model,
    require_some,
    score_lines,
    score_row,
)
from .neuronpedia import group_neurons

if TYPE_CHECKING:
    from ..atlas import Atlas, NeuronAtlas
    from ..explain.lookup import LookupTable

INFO_FILE = "explanations_openai.json"  # how the export was made (not a layer folder)
NEURON_ACTIVATIONS = "neuron_activations"  # ActivationScale.NEURON_ACTIVATIONS
LOOKUP = "token-lookup"  # the explainer whose simulator is the stored lookup table


def explanation_path(out_dir: Path, layer: int, neuron: int) -> Path:
    return Path(out_dir) / str(layer) / f"{neuron}.jsonl"


def _write(path: Path, data: bytes) -> None:
    """A temporary name renamed into place, without an fsync per neuron: the whole export is
    swapped in at once (``export/outdir.py``), so a crash never leaves it looking complete."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_bytes(data)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _num(x: float) -> float | None:
    x = float(x)
    return x if np.isfinite(x) else None


def sequence_obj(tokens: list[str], predicted: list[float], true: list[float]) -> Record:
    """A ``ScoredSequenceSimulation`` of one window (rule 3)."""
    from ..explain.scoring import correlation_score

    simulation = {
        "tokens": tokens,
        "expected_activations": [_num(p) for p in predicted],
        "activation_scale": NEURON_ACTIVATIONS,
        "distribution_values": [[_num(p)] for p in predicted],
        "distribution_probabilities": [[1.0] for _ in predicted],
        "uncalibrated_simulation": None,
        "dataclass_name": "SequenceSimulation",
    }
    return {
        "simulation": simulation,
        "true_activations": [_num(a) for a in true],
        "ev_correlation_score": _num(correlation_score(np.array(true), np.array(predicted))),
        "rsquared_score": None,
        "absolute_dev_explained_score": None,
        "dataclass_name": "ScoredSequenceSimulation",
    }


def _sequences(
    side: Record, neuron: NeuronAtlas, table: LookupTable, row: int, first: int
) -> list[Record]:
    from ..explain.lookup import simulate

    sign = 1.0 if side["side"] == "positive" else -1.0
    examples = neuron.top if side["side"] == "positive" else neuron.bottom
    wanted = set(side.get("heldout", {}).get("example_windows", []))
    one = table.take(np.array([row]))
    out, seen = [], set()
    for ex in examples:
        if ex.window not in wanted or ex.window in seen or ex.acts is None:
            continue
        seen.add(ex.window)
        ids = np.asarray(ex.token_ids, np.int64)  # whole window: contexts see the previous token
        predicted = simulate(one, ids)[0][first:].tolist()
        true = [sign * float(a) for a in ex.acts[first : len(ex.token_ids)]]
        tokens = [t.replace(SPIECE_SPACE, " ") for t in ex.tokens[first:]]
        out.append(sequence_obj(tokens, predicted, true))
    return out


def results_obj(
    rec: Record, neuron: NeuronAtlas, tables: dict[str, LookupTable], first: int
) -> Record:
    """The ``NeuronSimulationResults`` object of one explained neuron (rules 1-3)."""
    scored = []
    for side in rec["sides"]:
        seqs = []
        if side["explainer"] == LOOKUP and side["side"] in tables:
            seqs = _sequences(side, neuron, tables[side["side"]], int(rec["neuron"]), first)
        simulation = {
            "scored_sequence_simulations": seqs,
            "ev_correlation_score": side["scores"].get("top_and_random"),
            "rsquared_score": None,
            "absolute_dev_explained_score": None,
            "dataclass_name": "ScoredSimulation",
        }
        scored.append(
            {
                "explanation": side["explanation"],
                "scored_simulation": simulation,
                "dataclass_name": "ScoredExplanation",
            }
        )
    return {
        "neuron_id": {
            "layer_index": int(rec["layer"]),
            "neuron_index": int(rec["neuron"]),
            "dataclass_name": "NeuronId",
        },
        "scored_explanations": scored,
        "dataclass_name": "NeuronSimulationResults",
    }


def results_json(obj: Record) -> bytes:
    """The bytes of ``fast_dataclasses.dumps`` (compact orjson), plus a newline."""
    import orjson

    return bytes(orjson.dumps(obj)) + b"\n"


def export_explanations_openai(
    atlas: Atlas,
    neurons: Sequence[tuple[int, int]],
    out_dir: str | Path,
    *,
    progress: Callable[[int], None] | None = None,
) -> Path:
    """Write one ``NeuronSimulationResults`` file per explained neuron and the score side file;
    returns ``out_dir``. ``progress(n)`` gets the number of neurons just done.

    Raises:
        BadArgumentError: no neurons, or one not in the atlas.
        RunFormatError: the atlas has no explanations, or none of these neurons has one.
    """
    from ..explain.output import read_tables

    out = Path(out_dir)
    by_layer = group_neurons(atlas, neurons)
    made, found = explained_neurons(atlas.root, neurons)
    require_some(found, atlas.root)
    first = 0 if atlas.manifest["params"].get("include_bos", False) else 1
    scores: list[Record] = []
    for layer, indices in by_layer.items():
        lookup = any(
            s["explainer"] == LOOKUP
            for n in indices
            for s in found.get((layer, n), {}).get("sides", [])
        )
        tables = read_tables(atlas.root, layer) if lookup else {}
        for n in indices:
            rec = found.get((layer, n))
            if rec is not None:
                obj = results_obj(rec, atlas.neuron(layer, n), tables, first)
                _write(explanation_path(out, layer, n), results_json(obj))
                scores += [score_row(rec, s, explainer_model(s)) for s in rec["sides"]]
            if progress is not None:
                progress(1)
    atomic_write_bytes(out / SCORES_FILE, score_lines(scores))
    info: dict[str, Any] = {
        "format": "openai-neuron-simulation-results",
        "layout": "{layer}/{neuron}.jsonl",
        "scores": SCORES_FILE,
        "atlas_model": atlas.model_name,
        "explanations": made,
        "n_neurons": len(found),
    }
    atomic_write_bytes(out / INFO_FILE, (json.dumps(info, indent=1) + "\n").encode())
    return out
