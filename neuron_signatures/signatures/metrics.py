"""Per (neuron, probe) signature metrics, vectorised over the selected neurons.

1. :func:`gather_columns` streams ``run.iter_blocks()`` once and keeps only the selected neurons'
   columns: ``[n_tokens, K]`` for the whole run (K = number of selected neurons).
2. :func:`distribution_stats`: each neuron's median, quartiles and standard deviation over every
   non-BOS token of the run.
3. :func:`token_tables`: per prompt, token keys (stripped, case-folded pieces), functional and
   unnameable flags (the shared rules of :mod:`neuron_signatures.tokens`), the declared
   concept's span (matched on token pieces) and each position's "Say X" target.
4. :func:`probe_metrics`: per probe, the peak, cosine with the seed, robust z, density, sparsity
   and where the peak lies; arrays ``[n_probes, K]``.

BOS (position 0 when the run prepended it) is dropped everywhere; positions reported are still
positions in the prompt's own tokens (BOS = 0).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..prompts import concept_from_id
from ..store import PromptRecord, Run
from ..tokens import (
    DEFAULT_FUNCTIONAL_TOKENS,
    SPIECE_SPACE,
    functional_set,
    is_functional,
    is_unnameable,
    token_display,
)
from .config import SignatureConfig

IQR_TO_SIGMA = 1.349  # IQR of a normal distribution in standard deviations
CONCEPT_TYPES = ("entity", "attribute", "relationship")


@dataclass(frozen=True)
class Columns:
    """Selected neurons over the whole run: ``values [n_tokens, K]`` in run order, BOS kept;
    prompt ``i`` occupies rows ``offsets[i]:offsets[i + 1]``; ``skip`` leading rows are BOS."""

    values: np.ndarray
    offsets: np.ndarray
    skip: int

    def prompt(self, index: int) -> np.ndarray:
        """``[seq - skip, K]`` activations of one prompt without BOS."""
        return self.values[self.offsets[index] + self.skip : self.offsets[index + 1]]

    def scored_rows(self) -> np.ndarray:
        """``[n_tokens]`` bool: rows that are not BOS."""
        mask = np.ones(self.values.shape[0], bool)
        mask[self.offsets[:-1][np.diff(self.offsets) > 0]] = self.skip == 0
        return mask


def _ranges(starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Concatenated ``arange(s, s + n)`` for every (start, length) pair, without a Python loop."""
    lengths = np.asarray(lengths, np.int64)
    total = int(lengths.sum())
    shift = np.repeat(np.asarray(starts, np.int64) - np.cumsum(lengths) + lengths, lengths)
    return np.arange(total, dtype=np.int64) + shift


def gather_columns(run: Run, layers: np.ndarray, neurons: np.ndarray) -> Columns:
    """Stream the run once, keeping the columns of the ``K`` neurons ``(layers[k], neurons[k])``.

    Memory is ``n_tokens * K * 4`` bytes plus one block of one layer at a time.
    """
    lengths = np.array([p.seq_len for p in run.prompts], np.int64)
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    values = np.zeros((int(offsets[-1]), len(layers)), np.float32)
    groups = {int(layer): np.flatnonzero(layers == layer) for layer in np.unique(layers)}
    for block in run.iter_blocks():
        src = _ranges(np.asarray(block.starts), np.asarray(block.lengths))
        dst = _ranges(offsets[block.prompt_indices], np.asarray(block.lengths))
        for layer, cols in groups.items():
            values[np.ix_(dst, cols)] = block.acts(layer)[np.ix_(src, neurons[cols])]
    return Columns(values, offsets, 1 if run.prepend_bos else 0)


def transform(values: np.ndarray, cfg: SignatureConfig) -> np.ndarray:
    """The values peaks and percentiles are taken on: ``|a|`` or ``a`` (``cfg.peak_mode``)."""
    return np.abs(values) if cfg.peak_mode == "abs" else values


@dataclass(frozen=True)
class DistributionStats:
    """Per neuron ``[K]`` statistics over every non-BOS token of the run (transformed values)."""

    median: np.ndarray
    q25: np.ndarray
    q75: np.ndarray
    std: np.ndarray

    @property
    def robust_scale(self) -> np.ndarray:
        """IQR / 1.349; where the IQR is 0, the standard deviation; NaN when that is 0 too."""
        iqr = (self.q75 - self.q25) / IQR_TO_SIGMA
        scale = np.where(iqr > 0, iqr, self.std)
        return np.where(scale > 0, scale, np.nan)


def distribution_stats(cols: Columns, cfg: SignatureConfig) -> DistributionStats:
    """Median, quartiles and standard deviation of each column over the run's non-BOS rows."""
    x = transform(cols.values[cols.scored_rows()], cfg)
    if x.shape[0] == 0:
        nan = np.full(cols.values.shape[1], np.nan)
        return DistributionStats(nan, nan, nan, nan)
    q25, med, q75 = np.percentile(x, [25, 50, 75], axis=0)
    return DistributionStats(med, q25, q75, x.std(axis=0))


def _norm_piece(token: str) -> str:
    """A piece for concept matching: whitespace (and ``▁``) removed, case-folded."""
    return "".join(token.replace(SPIECE_SPACE, " ").split()).casefold()


def token_key(token: str) -> str:
    """A token's identity for counting peaks and naming: visible form, stripped, case-folded."""
    return token_display(token).strip().casefold()


def concept_span_mask(tokens: list[str], concept: str | None) -> np.ndarray:
    """``[n]`` True on tokens inside a span whose pieces spell ``concept``.

    Matching ignores case and whitespace and must start and end on token boundaries:
    ``"located in"`` matches ``["▁located", "▁in"]``, ``"Sacramento"`` matches
    ``["▁Sacr", "amento"]``, but ``"state"`` does not match ``"▁states"``.
    """
    mask = np.zeros(len(tokens), bool)
    target = _norm_piece(concept or "")
    if not target or not tokens:
        return mask
    pieces = [_norm_piece(t) for t in tokens]
    ends = np.cumsum([len(p) for p in pieces])
    starts = ends - np.array([len(p) for p in pieces])
    text = "".join(pieces)
    at = text.find(target)
    while at >= 0:
        first, last = np.flatnonzero(starts == at), np.flatnonzero(ends == at + len(target))
        if first.size and last.size:
            mask[first[0] : last[-1] + 1] = True
        at = text.find(target, at + 1)
    return mask


@dataclass(frozen=True)
class PromptTokens:
    """One prompt's token tables, BOS dropped (``[n]`` each); ``key_ids`` index the vocabulary."""

    record: PromptRecord
    concept: str | None
    concept_type: str | None
    key_ids: np.ndarray
    concept_mask: np.ndarray
    say_target: np.ndarray  # [n] position (BOS dropped) of the Say X target of each position, -1


@dataclass(frozen=True)
class TokenTables:
    """Token vocabulary of the analysed prompts and each prompt's tables."""

    keys: list[str]
    display: list[str]
    functional: np.ndarray  # [vocab] tokens.is_functional
    blacklisted: np.ndarray  # [vocab] in cfg.blacklist
    unnameable: np.ndarray  # [vocab] tokens.is_unnameable: byte, special or invisible
    prompts: dict[int, PromptTokens]

    @property
    def nameable(self) -> np.ndarray:
        """``[vocab]`` semantic tokens that may name a neuron."""
        return ~self.functional & ~self.blacklisted & ~self.unnameable


def prompt_concept(record: PromptRecord) -> tuple[str | None, str | None]:
    """Concept and concept type: the prompt file's, else from ``probe_<n>_<Concept>`` ids and an
    ``entity:`` / ``attribute:`` / ``relationship:`` text prefix."""
    concept = record.concept or concept_from_id(record.probe_id)
    ctype = record.concept_type
    if ctype is None:
        head = record.text.split(":", 1)[0].strip().casefold()
        ctype = head if ":" in record.text and head in CONCEPT_TYPES else None
    return concept, ctype


def token_tables(run: Run, indices: list[int], cfg: SignatureConfig, skip: int) -> TokenTables:
    """Build :class:`TokenTables` for the prompts ``indices`` (metadata only, no activations)."""
    functional = (
        functional_set(cfg.functional_tokens)
        if cfg.functional_tokens is not None
        else DEFAULT_FUNCTIONAL_TOKENS
    )
    black = {b.strip().casefold() for b in cfg.blacklist}
    vocab: dict[str, int] = {}
    display: dict[int, str] = {}  # display form of each key's first occurrence
    piece: dict[int, str] = {}  # the lossless piece of each key's first occurrence
    per_prompt: dict[int, tuple[PromptRecord, np.ndarray]] = {}
    for i in indices:
        rec = run.prompts[i]
        row: list[int] = []
        for t in rec.tokens[skip:]:  # prompt metadata, not activations
            row.append(vocab.setdefault(token_key(t), len(vocab)))
            display.setdefault(row[-1], token_display(t).strip())
            piece.setdefault(row[-1], t)
        per_prompt[i] = (rec, np.array(row, np.int64))
    keys = list(vocab)
    display_list = [display[k] for k in range(len(keys))]
    # a key's pieces differ only in case, whitespace and ``▁``, which neither rule sees
    is_func = np.array([is_functional(piece[k], functional) for k in range(len(keys))], bool)
    blacklisted = np.array([k in black for k in keys], bool)
    unnameable = np.array([is_unnameable(piece[k]) for k in range(len(keys))], bool)
    tables = TokenTables(keys, display_list, is_func, blacklisted, unnameable, {})
    for i, (rec, ids) in per_prompt.items():
        concept, ctype = prompt_concept(rec)
        mask = concept_span_mask(rec.tokens[skip:], concept)
        target = say_targets(ids, tables, cfg)
        tables.prompts[i] = PromptTokens(rec, concept, ctype, ids, mask, target)
    return tables


def say_targets(ids: np.ndarray, tables: TokenTables, cfg: SignatureConfig) -> np.ndarray:
    """``[n]`` for each position, the nearest nameable position within ``cfg.say_x_window`` in
    the direction its token points (``-1`` if none, or if the token itself is blacklisted).
    Ties between directions go forward."""
    n = len(ids)
    keys = [tables.keys[k] for k in ids]
    both = {t.casefold() for t in cfg.say_x_both_ways}
    back = {t.casefold() for t in cfg.say_x_backward}
    fwd_ok = np.array([k not in back for k in keys], bool)
    back_ok = np.array([k in back or k in both for k in keys], bool)
    good = tables.nameable[ids]
    pos = np.arange(n)
    target = np.full(n, -1, np.int64)
    target[tables.blacklisted[ids]] = n  # blocked: never searched, reset to -1 below
    for d in range(1, cfg.say_x_window + 1):
        for step, allowed in ((d, fwd_ok), (-d, back_ok)):
            j = pos + step
            inside = (j >= 0) & (j < n)
            hit = inside & allowed & (target < 0)
            hit[inside] &= good[j[inside]]
            target[hit] = j[hit]
    return np.where(target >= n, -1, target)


def _aligned(a: np.ndarray, b: np.ndarray, how: str) -> tuple[np.ndarray, np.ndarray]:
    """Align ``a [n, K]`` and ``b [m, K]`` (see :class:`SignatureConfig.cosine_alignment`)."""
    n, m = a.shape[0], b.shape[0]
    if min(n, m) == 0:
        return a[:0], b[:0]
    if how == "left":
        return a[: min(n, m)], b[: min(n, m)]
    if how == "right":
        L = min(n, m)
        return a[n - L :], b[m - L :]
    size = max(n, m)
    return _resample(a, size), _resample(b, size)


def _resample(x: np.ndarray, size: int) -> np.ndarray:
    """Linear interpolation of the rows of ``x [n, K]`` onto ``size`` evenly spaced points."""
    n = x.shape[0]
    if n == size or n == 0:
        return x
    t = np.linspace(0.0, n - 1, size)
    lo = np.floor(t).astype(np.int64)
    hi = np.minimum(lo + 1, n - 1)
    w = (t - lo)[:, None]
    return x[lo] * (1 - w) + x[hi] * w


def cosine_columns(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Cosine similarity of matching columns of ``a`` and ``b`` (``[n, K]``); NaN for zeros."""
    num = (a * b).sum(axis=0, dtype=np.float64)
    den = np.linalg.norm(a, axis=0) * np.linalg.norm(b, axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, num / np.where(den > 0, den, 1.0), np.nan)


@dataclass(frozen=True)
class ProbeMetrics:
    """Per (probe, neuron) metrics, arrays ``[n_probes, K]``; ``probes`` are run indices.

    ``peak_pos`` counts BOS as position 0; ``peak_key`` indexes the vocabulary (-1: inactive,
    see :func:`_mask_inactive`; ``peak_key_raw`` keeps the token of inactive peaks too);
    ``say_target_key`` is the key of the Say X target of a functional peak (-1: none).
    """

    probes: list[int]
    peak_pos: np.ndarray
    peak_value: np.ndarray  # transformed (|a| in abs mode)
    peak_activation: np.ndarray  # signed activation at the peak
    active: np.ndarray
    cosine_seed: np.ndarray
    robust_z: np.ndarray
    density: np.ndarray
    sparsity: np.ndarray
    peak_key: np.ndarray
    peak_key_raw: np.ndarray  # peak token whether active or not (-1: empty probe)
    peak_functional: np.ndarray
    on_concept: np.ndarray
    concept_present: np.ndarray  # [n_probes] the probe contains its declared concept
    say_target_key: np.ndarray


def _one_probe(
    a: np.ndarray, seed: np.ndarray, pt: PromptTokens, stats: DistributionStats,
    tables: TokenTables, cfg: SignatureConfig,
) -> dict[str, np.ndarray]:  # fmt: skip
    """Metrics ``[K]`` of one probe before :func:`_mask_inactive`; ``a [n, K]`` without BOS."""
    k = a.shape[1]
    if a.shape[0] == 0:
        nan, neg = np.full(k, np.nan), np.full(k, -1, np.int64)
        return {"peak_pos": neg, "peak_value": nan, "peak_activation": nan,
                "active": np.zeros(k, bool), "cosine_seed": nan, "robust_z": nan,
                "density": nan, "sparsity": nan, "peak_key": neg, "peak_key_raw": neg,
                "peak_functional": np.zeros(k, bool), "on_concept": np.zeros(k, bool),
                "say_target_key": neg}  # fmt: skip
    x = transform(a, cfg)
    cols = np.arange(k)
    idx = np.argmax(x, axis=0)  # first maximum: earliest position on ties
    peak = x[idx, cols]
    target = pt.say_target[idx]
    with np.errstate(invalid="ignore", divide="ignore"):
        sparsity = np.where(peak > 0, (peak - x.mean(axis=0)) / peak, np.nan)
    return {
        "peak_pos": idx + (pt.record.seq_len - a.shape[0]),
        "peak_value": peak, "peak_activation": a[idx, cols], "active": peak > cfg.min_peak,
        "cosine_seed": cosine_columns(*_aligned(a, seed, cfg.cosine_alignment)),
        "robust_z": (peak - stats.median) / stats.robust_scale,
        "density": (x > stats.q75).mean(axis=0), "sparsity": sparsity,
        "peak_key": pt.key_ids[idx], "peak_key_raw": pt.key_ids[idx],
        "peak_functional": tables.functional[pt.key_ids[idx]],
        "on_concept": pt.concept_mask[idx],
        "say_target_key": np.where(target >= 0, pt.key_ids[target], -1),
    }  # fmt: skip


def _mask_inactive(m: dict[str, np.ndarray], cfg: SignatureConfig) -> None:
    """Where a neuron does not fire on a probe (peak <= ``min_peak`` or below ``min_peak_ratio``
    of its largest probe peak), its peak has no token, kind, target or sparsity."""
    peak = np.nan_to_num(m["peak_value"], nan=-np.inf)
    top = peak.max(axis=0, keepdims=True)
    active = m["active"] & (peak >= cfg.min_peak_ratio * top)
    m["active"] = active
    m["sparsity"] = np.where(active, m["sparsity"], np.nan)
    m["peak_key"] = np.where(active, m["peak_key"], -1)
    m["peak_functional"] = active & m["peak_functional"]
    m["on_concept"] = active & m["on_concept"]
    m["say_target_key"] = np.where(m["peak_functional"], m["say_target_key"], -1)


def probe_metrics(
    cols: Columns, seed_index: int, probes: list[int], tables: TokenTables,
    stats: DistributionStats, cfg: SignatureConfig,
) -> ProbeMetrics:  # fmt: skip
    """Metrics of every probe (loop over probes only; each step is vectorised over neurons)."""
    seed = cols.prompt(seed_index)
    rows = [_one_probe(cols.prompt(i), seed, tables.prompts[i], stats, tables, cfg) for i in probes]
    stacked = {name: np.stack([r[name] for r in rows]) for name in rows[0]}
    _mask_inactive(stacked, cfg)
    present = np.array([tables.prompts[i].concept_mask.any() for i in probes], bool)
    return ProbeMetrics(probes=list(probes), concept_present=present, **stacked)
