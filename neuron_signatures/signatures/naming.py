"""Across-probe signature aggregates, role classes (Semantic / Relationship / Say X) and names.

1. :func:`aggregate` turns per-(probe, neuron) metrics into per-neuron aggregates, vectorised
   over neurons with per-(token, neuron) count and strength tables ``[vocab, K]``:
   the neuron's *dominant semantic token* is the non-functional token it peaks on most often
   (ties: the larger summed peak), and ``peak_consistency`` is the share of probes containing
   that token where the peak is on it (weak peaks included). ``semantic_confidence`` is how
   much that share can be trusted: its Wilson score lower bound (Wilson 1927) at
   ``cfg.semantic_confidence_z`` standard errors, so 3 of 3 probes (0.44 at z = 1.96) is weaker
   evidence than 8 of 8 (0.68) although both are 100% consistent. The Say X target is the token with
   the largest summed peak over the probes whose peak is on the dominant functional token and
   points at it.
2. :func:`classify` tests each class's criteria (thresholds from :class:`SignatureConfig`):
   an early-layer neuron is Semantic on a consistent single peak token alone, a later one also
   needs ``semantic_confidence`` (enough probes to believe the consistency);
   scores every class a neuron passes with an *alignment score* (the mean relative margin of its
   thresholded metrics, see :func:`_margin`) and keeps the best (ties: Semantic, Say X,
   Relationship). Neurons passing none are ``unclassified`` with the failed criteria as reasons.
3. :func:`supernodes` groups classified neurons by name.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np

from .config import SignatureConfig
from .metrics import Columns, ProbeMetrics, TokenTables, transform

CLASSES = ("semantic", "say_x", "relationship")  # tie order
UNCLASSIFIED = "unclassified"
NEVER_ACTIVE = "never activates on any probe (peak <= min_peak)"


@dataclass(frozen=True)
class Aggregates:
    """Per-neuron ``[K]`` aggregates; token fields are vocabulary ids (-1: none)."""

    n_active: np.ndarray
    peak_consistency: np.ndarray
    n_distinct_peaks: np.ndarray
    func_vs_sem: np.ndarray
    semantic_confidence: np.ndarray
    functional_confidence: np.ndarray
    median_sparsity: np.ndarray
    concept_hit_rate: np.ndarray
    semantic_token: np.ndarray
    functional_token: np.ndarray
    say_target: np.ndarray
    relation_token: np.ndarray


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, num / np.where(den > 0, den, 1), np.nan)


def wilson_lower_bound(hits: np.ndarray, n: np.ndarray, z: float) -> np.ndarray:
    """Wilson score interval's lower bound of the share ``hits / n`` (NaN where ``n == 0``):
    ``(p + z²/2n − z·sqrt(p(1−p)/n + z²/4n²)) / (1 + z²/n)``; ``z = 0`` gives ``p``."""
    n = np.asarray(n, np.float64)
    safe = np.where(n > 0, n, 1.0)
    p = np.asarray(hits, np.float64) / safe
    z2 = z * z
    spread = z * np.sqrt(np.maximum(p * (1 - p) / safe + z2 / (4 * safe * safe), 0.0))
    low = (p + z2 / (2 * safe) - spread) / (1 + z2 / safe)
    return np.where(n > 0, np.clip(low, 0.0, 1.0), np.nan)


def _tally(keys: np.ndarray, weights: np.ndarray, vocab: int) -> tuple[np.ndarray, np.ndarray]:
    """``(count, strength)`` ``[vocab, K]`` of ``keys [P, K]`` (``-1`` skipped)."""
    p_idx, k_idx = np.nonzero(keys >= 0)
    count = np.zeros((vocab, keys.shape[1]), np.int64)
    strength = np.zeros((vocab, keys.shape[1]), np.float64)
    np.add.at(count, (keys[p_idx, k_idx], k_idx), 1)
    np.add.at(strength, (keys[p_idx, k_idx], k_idx), weights[p_idx, k_idx])
    return count, strength


def _best(
    count: np.ndarray, strength: np.ndarray, allowed: np.ndarray, by_strength: bool = False
) -> np.ndarray:
    """Per column, the allowed row with the most counts (ties: larger strength), or with the
    largest strength when ``by_strength``; -1 if none has a count."""
    total = np.abs(strength).sum(axis=0) + 1e-30
    score = strength if by_strength else count + 0.5 * strength / total
    score = np.where(allowed[:, None] & (count > 0), score, -np.inf)
    best = np.argmax(score, axis=0) if score.shape[0] else np.zeros(score.shape[1], np.int64)
    cols = np.arange(score.shape[1])
    ok = score.shape[0] > 0 and np.isfinite(score[best, cols])
    return np.where(ok, best, -1)


def _token_activation(
    cols: Columns, pm: ProbeMetrics, tables: TokenTables, cfg: SignatureConfig
) -> np.ndarray:
    """``[vocab, K]`` each token's summed (or mean) activation over its occurrences in probes."""
    ids = np.concatenate([tables.prompts[i].key_ids for i in pm.probes])
    x = np.concatenate([transform(cols.prompt(i), cfg) for i in pm.probes])
    agg = np.zeros((len(tables.keys), x.shape[1]), np.float64)
    if ids.size:
        order = np.argsort(ids, kind="stable")
        uniq, starts = np.unique(ids[order], return_index=True)
        agg[uniq] = np.add.reduceat(x[order].astype(np.float64), starts, axis=0)
    if cfg.relationship_aggregate == "mean":
        agg /= np.maximum(np.bincount(ids, minlength=len(tables.keys)), 1)[:, None]
    return agg


def _relation_token(
    cols: Columns, pm: ProbeMetrics, tables: TokenTables, cfg: SignatureConfig
) -> np.ndarray:
    """``[K]`` the nameable token with the highest aggregated activation (-1: none)."""
    if not tables.nameable.any():
        return np.full(pm.peak_key.shape[1], -1, np.int64)
    relation = _token_activation(cols, pm, tables, cfg)
    return np.argmax(np.where(tables.nameable[:, None], relation, -np.inf), axis=0)


def aggregate(
    cols: Columns, pm: ProbeMetrics, tables: TokenTables, cfg: SignatureConfig
) -> Aggregates:
    """Per-neuron aggregates across the probes (see the module docstring)."""
    vocab, k = len(tables.keys), pm.peak_key.shape[1]
    count, strength = _tally(pm.peak_key, pm.peak_value, vocab)
    sem_tok = _best(count, strength, ~tables.functional)
    func_tok = _best(count, strength, tables.functional)
    cols_k = np.arange(k)
    n_active = pm.active.sum(axis=0)
    n_func = (count * tables.functional[:, None]).sum(axis=0)
    presence = np.zeros((len(pm.probes), vocab + 1), bool)  # last column: "no token"
    for row, i in enumerate(pm.probes):
        presence[row, tables.prompts[i].key_ids] = True
    contains = presence[:, sem_tok]  # sem_tok == -1 reads the all-False last column
    hit = contains & (pm.peak_key_raw == sem_tok[None, :])
    n_hit, n_contains = hit.sum(axis=0), contains.sum(axis=0)
    on_func = (pm.peak_key == func_tok[None, :]) & (func_tok >= 0)[None, :]
    say_keys = np.where(on_func, pm.say_target_key, -1)
    say_count, say_strength = _tally(say_keys, pm.peak_value, vocab)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN: never active
        med_sparsity = np.nanmedian(pm.sparsity, axis=0)
    present = pm.concept_present[:, None]
    return Aggregates(
        n_active=n_active,
        peak_consistency=_ratio(n_hit, n_contains),
        n_distinct_peaks=(count > 0).sum(axis=0),
        func_vs_sem=_ratio(n_func, n_active),
        semantic_confidence=wilson_lower_bound(n_hit, n_contains, cfg.semantic_confidence_z),
        functional_confidence=_ratio(np.where(func_tok >= 0, count[func_tok, cols_k], 0), n_func),
        median_sparsity=med_sparsity,
        concept_hit_rate=_ratio((pm.on_concept & present).sum(axis=0), present.sum(axis=0)),
        semantic_token=sem_tok,
        functional_token=func_tok,
        say_target=_best(say_count, say_strength, tables.nameable, by_strength=True),
        relation_token=np.where(n_active > 0, _relation_token(cols, pm, tables, cfg), -1),
    )


@dataclass(frozen=True)
class Criterion:
    """One test of a class: ``passed [K]``, ``margin [K]`` (NaN: a gate, not scored), text."""

    label: str
    passed: np.ndarray
    margin: np.ndarray
    text: list[str]


def _margin(value: np.ndarray, threshold: float, at_least: bool) -> np.ndarray:
    """Relative margin in [0, 1]: ``(v - t) / (1 - t)`` for ``v >= t`` on shares, or
    ``(t - v) / t`` for ``v < t``; 0 when failed or undefined."""
    span = (1.0 - threshold) if at_least else threshold
    raw = (value - threshold) if at_least else (threshold - value)
    with np.errstate(invalid="ignore", divide="ignore"):
        m = raw / span if span > 0 else np.where(raw >= 0, 1.0, 0.0)
    return np.clip(np.nan_to_num(m, nan=0.0), 0.0, 1.0)


def _cmp(name: str, value: np.ndarray, threshold: float, at_least: bool) -> Criterion:
    ok = value >= threshold if at_least else value < threshold
    ok = ok & np.isfinite(value)
    op_ok, op_bad = (">=", "<") if at_least else ("<", ">=")
    text = [
        f"{name} {v:.2f} {op_ok if o else op_bad} {threshold:g}"
        if np.isfinite(v)
        else f"{name} undefined"
        for v, o in zip(value.tolist(), ok.tolist(), strict=True)
    ]
    return Criterion(name, ok, _margin(value, threshold, at_least), text)


def _gate(name: str, ok: np.ndarray, yes: list[str], no: list[str]) -> Criterion:
    text = [y if o else n for y, n, o in zip(yes, no, ok.tolist(), strict=True)]
    return Criterion(name, ok, np.full(ok.shape, np.nan), text)


def _name_gate(token: np.ndarray, tables: TokenTables, what: str) -> Criterion:
    """The token exists, is not blacklisted and is readable (:func:`tokens.is_unnameable`)."""
    found = token >= 0
    black = np.zeros(token.shape, bool)
    unreadable = np.zeros(token.shape, bool)
    black[found] = tables.blacklisted[token[found]]
    unreadable[found] = tables.unnameable[token[found]]
    shown = [tables.display[t] if t >= 0 else "" for t in token.tolist()]
    no = [
        f"no {what}" if not f
        else f"{what} {s!r} is blacklisted" if b
        else f"{what} {s!r} is unnameable (byte, special or invisible token)"
        for s, f, b in zip(shown, found.tolist(), black.tolist(), strict=True)
    ]  # fmt: skip
    return _gate(what, found & ~black & ~unreadable, [f"{what} {s!r}" for s in shown], no)


def criteria(
    agg: Aggregates, layers: np.ndarray, tables: TokenTables, cfg: SignatureConfig, n_layers: int
) -> dict[str, list[Criterion]]:
    """Every class's criteria, evaluated for all neurons."""
    early, late = cfg.layer_bounds(n_layers)
    is_early, is_late = layers <= early, layers >= late
    lay = [str(v) for v in layers.tolist()]
    distinct = agg.n_distinct_peaks <= cfg.semantic_max_distinct_peaks
    conf = _cmp("semantic_confidence", agg.semantic_confidence, cfg.semantic_confidence, True)
    return {
        "semantic": [
            _cmp("peak_consistency", agg.peak_consistency, cfg.semantic_peak_consistency, True),
            _gate("n_distinct_peaks", distinct,
                  [f"n_distinct_peaks {n} <= {cfg.semantic_max_distinct_peaks}"
                   for n in agg.n_distinct_peaks.tolist()],
                  [f"n_distinct_peaks {n} > {cfg.semantic_max_distinct_peaks}"
                   for n in agg.n_distinct_peaks.tolist()]),
            _gate("early_or_confident", is_early | conf.passed,
                  [f"layer {v} <= {early} (early)" if e else t
                   for v, e, t in zip(lay, is_early.tolist(), conf.text, strict=True)],
                  [f"layer {v} > {early} (not early) and {t}"
                   for v, t in zip(lay, conf.text, strict=True)]),
            _name_gate(agg.semantic_token, tables, "semantic peak token"),
        ],
        "say_x": [
            _cmp("func_vs_sem", agg.func_vs_sem, cfg.say_x_func_vs_sem, True),
            _cmp("functional_confidence", agg.functional_confidence,
                 cfg.say_x_functional_confidence, True),
            _gate("late_layer", is_late, [f"layer {v} >= {late} (late)" for v in lay],
                  [f"layer {v} < {late} (not late)" for v in lay]),
            _name_gate(agg.say_target, tables, "say target"),
        ],
        "relationship": [
            _cmp("median_sparsity", agg.median_sparsity, cfg.relationship_max_sparsity, False),
            _name_gate(agg.relation_token, tables, "relation token"),
        ],
    }  # fmt: skip


@dataclass(frozen=True)
class Classification:
    """One class (or ``unclassified``), name and reasons per neuron; ``scores [3, K]`` holds the
    alignment score of each class in :data:`CLASSES` order (NaN where the class failed)."""

    classes: list[str]
    names: list[str | None]
    reasons: list[list[str]]
    scores: np.ndarray


def _failures(k: int, crit: dict[str, list[Criterion]]) -> list[str]:
    """Every failed criterion of neuron ``k``, prefixed by its class."""
    return [f"{c}: {cr.text[k]}" for c in CLASSES for cr in crit[c] if not cr.passed[k]]


def classify(
    agg: Aggregates, layers: np.ndarray, tables: TokenTables, cfg: SignatureConfig, n_layers: int
) -> Classification:
    """Pick at most one class per neuron (best alignment score) and name it."""
    crit = criteria(agg, layers, tables, cfg, n_layers)
    alive = agg.n_active > 0
    passed = np.stack(
        [np.logical_and.reduce([cr.passed for cr in crit[name]]) & alive for name in CLASSES]
    )
    margins = np.stack(
        [np.mean([cr.margin for cr in crit[name] if not np.isnan(cr.margin).all()], axis=0)
         for name in CLASSES]
    )  # fmt: skip
    scores = np.where(passed, margins, np.nan)
    pick = np.argmax(np.where(passed, margins, -1.0), axis=0)  # first max: tie order
    token = {"semantic": agg.semantic_token, "say_x": agg.say_target,
             "relationship": agg.relation_token}  # fmt: skip
    fmt = {"semantic": cfg.semantic_format, "say_x": cfg.say_x_format,
           "relationship": cfg.relationship_format}  # fmt: skip
    shown = [*tables.display, ""]  # -1 (no token) reads ""
    classes: list[str] = []
    names: list[str | None] = []
    reasons: list[list[str]] = []
    for k in range(len(layers)):  # output formatting only
        if not passed[:, k].any():
            classes.append(UNCLASSIFIED)
            names.append(None)
            reasons.append(_failures(k, crit) if alive[k] else [NEVER_ACTIVE])
            continue
        cls = CLASSES[int(pick[k])]
        classes.append(cls)
        names.append(fmt[cls].format(token=shown[int(token[cls][k])]))
        why = [f"{cls}: {cr.text[k]}" for cr in crit[cls]]
        why += [f"also matched {c} (alignment {scores[j, k]:.2f} vs {scores[pick[k], k]:.2f})"
                for j, c in enumerate(CLASSES) if c != cls and passed[j, k]]  # fmt: skip
        reasons.append(why)
    return Classification(classes, names, reasons, scores)


def supernodes(
    layers: np.ndarray,
    neurons: np.ndarray,
    cls: Classification,
    influence: np.ndarray | None,
    corpus_supported: list[bool | None] | None = None,
) -> list[dict[str, Any]]:
    """Classified neurons grouped by name: members, layers and summed influence (if known);
    with ``corpus_supported`` (``[K]``, :mod:`.corpus_check`), each member's verdict too."""
    groups: dict[str, list[int]] = {}
    for k, name in enumerate(cls.names):
        if name is not None:
            groups.setdefault(name, []).append(k)
    out = []
    for name, members in groups.items():
        infl = None if influence is None else float(np.nansum(influence[members]))
        out.append({
            "name": name,
            "classes": sorted({cls.classes[k] for k in members}),
            "n_members": len(members),
            "layers": sorted({int(layers[k]) for k in members}),
            "influence": infl,
            "members": [{"layer": int(layers[k]), "neuron": int(neurons[k]),
                         "class": cls.classes[k],
                         "influence": None if influence is None else float(influence[k]),
                         **({} if corpus_supported is None
                            else {"corpus_supported": corpus_supported[k]})}
                        for k in members],
        })  # fmt: skip
    return sorted(out, key=lambda s: (-abs(s["influence"] or 0.0), -s["n_members"], s["name"]))
