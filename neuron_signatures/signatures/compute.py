"""Cross-prompt neuron signatures: from a run, a seed prompt and a neuron selection to per-probe
metrics, role classes, names and supernodes, and their files.

1. Read the selection (:mod:`.signatures_config`: ``read_selection`` for ``top_neurons`` /
   influence JSON or influence CSV, ``parse_neuron_ids`` / ``explicit_selection``).
2. Stream the run once for the selected neurons' columns and their run-wide statistics
   (:mod:`.signatures_metrics`).
3. Per probe metrics, then per neuron aggregates, classes and names (:mod:`.naming`).
4. Optionally (:func:`with_write_check`), rank each Say X name among the tokens the neuron's
   weights promote (:mod:`.write_check`; loads the run's model).
5. Optionally (:func:`with_corpus_check`), check each name against an atlas of the same model
   (:mod:`.corpus_check`: peak share of the top examples, density, write rank).
6. :func:`write_signatures`: ``signatures_<stem>.csv/.parquet`` (one row per neuron x probe),
   ``signatures_<stem>.json`` (per-neuron aggregates, class, name, reasons and per-probe peaks),
   ``supernodes_<stem>.json`` and ``signatures_<stem>_meta.json`` (thresholds and inputs).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from .. import __version__
from ..analysis.results import analysis_dir, write_json
from ..analysis.tables import (
    jsonable,
    prompt_file_ids,
    records,
    safe_name,
    write_table,
)
from ..errors import BadArgumentError
from ..store import Run
from ..store.manifest import utc_now
from ..tokens import token_display
from .config import NeuronSelection, SignatureConfig
from .corpus_check import (
    CORPUS_FIELDS,
    check_atlas,
    check_same_model,
    claim_from_record,
)
from .metrics import (
    ProbeMetrics,
    distribution_stats,
    gather_columns,
    probe_metrics,
    token_tables,
)
from .naming import CLASSES, aggregate, classify, supernodes
from .result import SKIPPED, SignatureResult
from .write_check import check_say_x, say_x_tokens, unchecked


def _check_selection(run: Run, sel: NeuronSelection) -> None:
    bad_layer = ~np.isin(sel.layers, run.layers)
    bad_neuron = (sel.neurons < 0) | (sel.neurons >= run.d_mlp)
    if bad_layer.any() or bad_neuron.any():
        k = int(np.flatnonzero(bad_layer | bad_neuron)[0])
        run.check_neuron(int(sel.layers[k]), int(sel.neurons[k]))  # raises with the fix


def _probe_indices(run: Run, seed: int, probes: list[str] | None) -> list[int]:
    if probes is not None:
        out = list(dict.fromkeys(run.prompt_index(p) for p in probes))
    else:
        out = [p.index for p in run.prompts if p.index != seed]
    if not out:
        raise BadArgumentError(
            f"{run.run_dir} has no probe prompt besides the seed: dump the probes too"
        )
    return out


def compute_signatures(
    run: Run, seed_prompt: str | int, selection: NeuronSelection,
    cfg: SignatureConfig | None = None, probes: list[str] | None = None,
) -> SignatureResult:  # fmt: skip
    """Signatures of the selected neurons on every probe of ``run`` (all prompts but the seed,
    or ``probes``). Streams the run once."""
    cfg = cfg or SignatureConfig()
    _check_selection(run, selection)
    seed = run.prompt_index(seed_prompt)
    idx = _probe_indices(run, seed, probes)
    cols = gather_columns(run, selection.layers, selection.neurons)
    stats = distribution_stats(cols, cfg)
    tables = token_tables(run, sorted({*idx, seed}), cfg, cols.skip)
    pm = probe_metrics(cols, seed, idx, tables, stats, cfg)
    seed_pm = probe_metrics(cols, seed, [seed], tables, stats, cfg)
    agg = aggregate(cols, pm, tables, cfg)
    cls = classify(agg, selection.layers, tables, cfg, run.n_layers)
    return SignatureResult(selection, seed, cfg, tables, stats, pm, seed_pm, agg, cls)


def with_write_check(
    run: Run, res: SignatureResult, lm: Any = None, device: str = "cpu", dtype: str = "fp32"
) -> SignatureResult:
    """``res`` with the Say X write check (:func:`.write_check.check_say_x`): the run's model
    is loaded once, only when a neuron is Say X and no ``lm`` is given."""
    return replace(res, write_check=check_say_x(run, res, lm, device, dtype))


def with_corpus_check(run: Run, res: SignatureResult, atlas: Any) -> SignatureResult:
    """``res`` with every name checked against ``atlas`` (an :class:`~neuron_signatures.atlas.
    Atlas` of the run's model; :mod:`.corpus_check`). Run it after :func:`with_write_check` to
    use the write check's exact Say X ranks.

    Raises:
        BadArgumentError: the atlas is of another model.
    """
    check_same_model(run, atlas)
    claims = [claim_from_record(r) for r in neuron_records(run, res, probe_table(run, res))]
    return replace(res, corpus_check=check_atlas(atlas, claims, res.config.say_x_write_top_n))


# 2 added the corpus check's fields; version 1 files read with them missing (not checked)
SIGNATURES_FORMAT_VERSION = 2
SAY_X_FIELDS = ("say_x_token", "say_x_write_rank", "say_x_write_agrees")


def say_x_fields(res: SignatureResult) -> dict[str, list[Any]]:
    """``[K]`` lists of :data:`SAY_X_FIELDS` (None where not Say X or not checked)."""
    wc = res.write_check or unchecked(res, SKIPPED)
    return {"say_x_token": say_x_tokens(res), "say_x_write_rank": wc.rank,
            "say_x_write_agrees": wc.agrees}  # fmt: skip


def corpus_fields(res: SignatureResult) -> dict[str, list[Any]]:
    """``[K]`` lists of :data:`.corpus_check.CORPUS_FIELDS` (None where not checked)."""
    checks = res.corpus_check.checks if res.corpus_check else [None] * len(res.selection)
    empty = dict.fromkeys(CORPUS_FIELDS)
    rows = [c.fields() if c is not None else empty for c in checks]
    return {f: [r[f] for r in rows] for f in CORPUS_FIELDS}


PROBE_COLUMNS = (
    "layer", "neuron", "probe_id", "probe_index", "concept", "concept_type", "concept_in_probe",
    "peak_pos", "peak_token", "peak_activation", "peak_value", "peak_kind", "on_concept",
    "peak_functional", "say_target", "cosine_seed", "robust_z", "density", "sparsity", "class",
    "name", *SAY_X_FIELDS, *CORPUS_FIELDS,
)  # fmt: skip
_NEURON_ONLY = ("layer", "neuron", "class", "name", *SAY_X_FIELDS, *CORPUS_FIELDS)


def _peak_kind(pm: ProbeMetrics) -> np.ndarray:
    """``[P, K]`` ``concept`` / ``functional`` / ``semantic`` / ``none`` (inactive)."""
    return np.select(
        [~pm.active, pm.on_concept, pm.peak_functional],
        ["none", "concept", "functional"],
        "semantic",
    ).astype(object)


def _peak_tokens(run: Run, pm: ProbeMetrics) -> np.ndarray:
    """``[P, K]`` display form of each peak token (None for an empty probe)."""
    out = np.full(pm.peak_pos.shape, None, object)
    for row, i in enumerate(pm.probes):
        toks = np.array([token_display(t) for t in run.prompts[i].tokens] + [None], object)
        out[row] = toks[pm.peak_pos[row]]  # -1 (empty probe) reads the trailing None
    return out


def probe_table(run: Run, res: SignatureResult, pm: ProbeMetrics | None = None) -> Any:
    """One row per (neuron, probe), neuron-major, columns :data:`PROBE_COLUMNS`."""
    import pandas as pd

    pm = pm or res.metrics
    n_p, k = pm.peak_pos.shape
    sel, tables = res.selection, res.tables
    recs = [tables.prompts[i] for i in pm.probes]
    names = np.array([*tables.display, None], object)

    def flat(a: np.ndarray) -> np.ndarray:  # [P, K] -> neuron-major [K * P]
        return np.asarray(a).T.reshape(-1)

    def per_probe(values: list[Any]) -> np.ndarray:
        return np.tile(np.array(values, object), k)

    data = {
        "layer": np.repeat(sel.layers, n_p), "neuron": np.repeat(sel.neurons, n_p),
        "probe_id": per_probe([r.record.probe_id for r in recs]),
        "probe_index": np.tile(np.array(pm.probes, np.int64), k),
        "concept": per_probe([r.concept for r in recs]),
        "concept_type": per_probe([r.concept_type for r in recs]),
        "concept_in_probe": np.tile(pm.concept_present, k),
        "peak_pos": flat(pm.peak_pos), "peak_token": flat(_peak_tokens(run, pm)),
        "peak_activation": flat(pm.peak_activation), "peak_value": flat(pm.peak_value),
        "peak_kind": flat(_peak_kind(pm)), "on_concept": flat(pm.on_concept),
        "peak_functional": flat(pm.peak_functional), "say_target": flat(names[pm.say_target_key]),
        "cosine_seed": flat(pm.cosine_seed), "robust_z": flat(pm.robust_z),
        "density": flat(pm.density), "sparsity": flat(pm.sparsity),
        "class": np.repeat(np.array(res.classification.classes, object), n_p),
        "name": np.repeat(np.array(res.classification.names, object), n_p),
    }  # fmt: skip
    nullable = {
        "say_x_token": "string",
        "say_x_write_rank": "Int64",
        "say_x_write_agrees": "boolean",
        "corpus_supported": "boolean",
        "corpus_reason": "string",
        "corpus_peak_share": "Float64",
        "corpus_density": "Float64",
        "corpus_write_rank": "Int64",
        "corpus_token_count": "Int64",
    }  # typed even when every value is null
    for col, values in {**say_x_fields(res), **corpus_fields(res)}.items():
        data[col] = pd.array(np.repeat(np.array(values, object), n_p), dtype=nullable[col])
    return pd.DataFrame(data, columns=list(PROBE_COLUMNS))


_AGGREGATE_FIELDS = (
    "n_active", "peak_consistency", "n_distinct_peaks", "func_vs_sem", "semantic_confidence",
    "functional_confidence", "median_sparsity", "concept_hit_rate",
)  # fmt: skip
_TOKEN_FIELDS = ("semantic_token", "functional_token", "say_target", "relation_token")


def neuron_records(run: Run, res: SignatureResult, table: Any) -> list[dict[str, Any]]:
    """The ``neurons`` list of ``signatures_*.json``: one dict per neuron, best first."""
    rows = records(table)
    seed_rows = records(probe_table(run, res, res.seed))
    n_p = len(res.metrics.probes)
    agg, cls, sel = res.aggregates, res.classification, res.selection
    say_x = {**say_x_fields(res), **corpus_fields(res)}
    names = [*res.tables.display, None]
    peaks = res.metrics.peak_value
    score = np.nan_to_num(peaks).sum(axis=0) / np.maximum((~np.isnan(peaks)).sum(axis=0), 1)
    out = []
    for k in range(len(sel)):  # output formatting only
        entry: dict[str, Any] = {
            "rank": k + 1, "layer": int(sel.layers[k]), "neuron": int(sel.neurons[k]),
            "class": cls.classes[k], "name": cls.names[k], "reasons": cls.reasons[k],
        }  # fmt: skip
        entry.update({f: values[k] for f, values in say_x.items()})
        if sel.influence is not None:
            entry["influence"] = sel.influence[k]
        entry["score"] = float(score[k])
        entry["alignment"] = {c: cls.scores[j, k] for j, c in enumerate(CLASSES)}
        entry.update({f: getattr(agg, f)[k] for f in _AGGREGATE_FIELDS})
        entry.update({f: names[int(getattr(agg, f)[k])] for f in _TOKEN_FIELDS})
        entry["run_stats"] = {"median": res.stats.median[k], "q25": res.stats.q25[k],
                              "q75": res.stats.q75[k]}  # fmt: skip
        strip = [c for c in PROBE_COLUMNS if c not in _NEURON_ONLY]
        entry["seed"] = {c: seed_rows[k][c] for c in strip}
        entry["probes"] = [{c: r[c] for c in strip} for r in rows[k * n_p : (k + 1) * n_p]]
        out.append(entry)
    return out


def file_stem(run: Run, res: SignatureResult, name: str | None = None) -> str:
    """``name``, else ``<seed id>_<selection tag>`` (the tag alone when it names the seed)."""
    if name:
        return safe_name(name)
    seed_id = run.prompts[res.seed_index].probe_id
    seed = prompt_file_ids([p.probe_id for p in run.prompts])[seed_id]
    tag = res.selection.tag
    return tag if f"_{seed}_" in f"_{tag}_" else f"{seed}_{tag}"


def write_signatures(
    run: Run, res: SignatureResult, out_dir: str | Path | None = None, name: str | None = None,
    inputs: dict[str, Any] | None = None, parquet: bool = True,
) -> list[Path]:  # fmt: skip
    """Write the per-probe table, the per-neuron JSON, the supernodes and the meta file."""
    folder = analysis_dir(run.run_dir, out_dir)
    folder.mkdir(parents=True, exist_ok=True)
    stem = file_stem(run, res, name)
    seed_id = run.prompts[res.seed_index].probe_id
    table = probe_table(run, res)
    head = {
        "format_version": SIGNATURES_FORMAT_VERSION, "seed_prompt_id": seed_id,
        "source": res.selection.source, "model_name": run.model_name, "n_layers": run.n_layers,
        "classes": {c: res.classification.classes.count(c) for c in (*CLASSES, "unclassified")},
    }  # fmt: skip
    nodes = supernodes(res.selection.layers, res.selection.neurons, res.classification,
                       res.selection.influence, corpus_fields(res)["corpus_supported"])  # fmt: skip
    json_path = folder / f"signatures_{stem}.json"
    nodes_path = folder / f"supernodes_{stem}.json"
    meta_path = folder / f"signatures_{stem}_meta.json"
    write_json(json_path, jsonable({**head, "kind": "signatures",
                                    "neurons": neuron_records(run, res, table)}))  # fmt: skip
    write_json(nodes_path, jsonable({**head, "kind": "supernodes", "supernodes": nodes}))
    files = [json_path, *write_table(table, folder / f"signatures_{stem}.csv", parquet), nodes_path]
    meta = {
        **head, "kind": "signatures_meta", "created_at_utc": utc_now(),
        "neuron_signatures_version": __version__, "run_dir": str(run.run_dir),
        "run_fingerprint": run.manifest.get("fingerprint"), "save_dtype": run.save_dtype,
        "thresholds": res.config.to_dict(run.n_layers),
        "say_x_write_check": (res.write_check or unchecked(res, SKIPPED)).meta(),
        "corpus_check": res.corpus_check.meta() if res.corpus_check else {"status": SKIPPED},
        "probes": [run.prompts[i].probe_id for i in res.metrics.probes],
        "n_neurons": len(res.selection), "inputs": inputs or {},
        "files": [p.name for p in files],
    }  # fmt: skip
    write_json(meta_path, jsonable(meta))
    return [*files, meta_path]
