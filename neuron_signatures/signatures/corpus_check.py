"""Corpus check of signature names: does an atlas of the same model support each name?

A signature name comes from a handful of probe prompts; an atlas sees the neuron over a whole
corpus. For a named neuron of class ``semantic`` ("X"), ``relationship`` ("(X) related") or
``say_x`` ("Say (X)"), with named token X and *side* s (the sign of the neuron's summed activation
at the signature's peaks: +1 when it fires positive there, -1 negative), the atlas gives:

1. **peak hits**: how many of the atlas's examples on side s (its top examples for +1, bottom
   examples for -1) have X at their peak, i.e. as the token at the example's position. Tokens
   are compared normalised (:func:`~neuron_signatures.signatures.metrics.token_key`: visible
   form, stripped, case-folded), so ``▁Texas``, ``Texas`` and ``texas`` are one token.
2. **density**: the share of the atlas's corpus tokens on side s: ``frac_positive`` (x > 0) for
   +1, ``1 - frac_positive`` (x <= 0) for -1.
3. **write rank**: X's rank among the tokens the neuron's output promotes when it fires on side
   s: the exact rank of the signatures' Say X write check when it ran (``say_x_write_rank``),
   else X's place in the atlas's stored list (``write_top`` for +1, ``write_bottom`` for -1;
   the atlas keeps its ``write_scores_k`` best), else unknown.
4. **corpus count**: how often X occurs in the atlas's corpus.

The rules (thresholds are the named constants below, ``top_n`` is the signatures config's
``say_x_write_top_n``):

- Semantic and Relationship names claim the neuron is about X:

  a. *supported* when X is the peak of at least :data:`MIN_PEAK_SHARE` of the examples it could
     fill: ``hits >= max(1, ceil(MIN_PEAK_SHARE * min(n_examples, count)))`` (a token that occurs
     3 times can fill 3 of 20 examples, not 20);
  b. else *not supported* when the neuron is dense (density > :data:`DENSE_MAX`): it fires on
     most tokens, so X is not what it detects;
  c. else *supported* when X is among the neuron's ``top_n`` most promoted tokens;
  d. else *untested* when X never occurs in the corpus (the corpus can say nothing about X);
  e. else *not supported*.

- Say X names claim the neuron's output promotes X: *supported* when its write rank is
  ``<= top_n``; *not supported* when the rank is larger (or X is missing from an atlas list of
  at least ``top_n`` tokens); *untested* when neither the write check nor the atlas ranks X.
- Unclassified neurons have no name, and a neuron of a layer the atlas lacks is untested.

The atlas must be of the run's model (:func:`check_same_model`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import BadArgumentError
from ..tokens import token_display

if TYPE_CHECKING:
    from ..atlas import Atlas, NeuronAtlas
    from ..store import Run

# A name says X is *the* concept of the neuron, so X should drive a good part of its strongest
# activations: a quarter of the top examples. By chance alone a token of corpus frequency f peaks
# about f * 20 of 20 examples (0.02 for one token in a thousand), so 5 of 20 is far from chance
# while leaving room for the neuron's other, related peaks (Dallas, Houston for "Texas").
MIN_PEAK_SHARE = 0.25
# Gated activations (gelu(gate) * up) take either sign on tokens the neuron ignores, so about
# half the corpus on one side is the baseline of a neuron that detects nothing in particular.
# A neuron on the name's side for more than 90% of all tokens has a systematic offset there: it
# fires on nearly everything, so the tokens carrying it are mostly not X.
DENSE_MAX = 0.90
DEFAULT_TOP_N = 20  # SignatureConfig.say_x_write_top_n's default: the Say X write check's bar

TOKEN_FIELD = {
    "semantic": "semantic_token",
    "relationship": "relation_token",
    "say_x": "say_target",
}
CORPUS_FIELDS = (
    "corpus_supported",
    "corpus_reason",
    "corpus_peak_share",
    "corpus_density",
    "corpus_write_rank",
    "corpus_token_count",
)
SUPPORTED, NOT_SUPPORTED, UNTESTED = "supported", "not supported", "untested"


def token_key(token: str) -> str:
    """A token's identity for naming (as :func:`.metrics.token_key`): visible form, stripped,
    case-folded."""
    return token_display(token).strip().casefold()


@dataclass(frozen=True)
class NameClaim:
    """One named neuron: what its signature says, read from a signatures record.

    Attributes:
        layer / neuron: the neuron.
        cls: ``semantic``, ``relationship`` or ``say_x``.
        token: X, the named token (display form).
        side: +1 when the neuron fires positive at its signature peaks, -1 negative.
        write_rank: X's exact rank by write score from the Say X write check, if it ran.
    """

    layer: int
    neuron: int
    cls: str
    token: str
    side: int = 1
    write_rank: int | None = None


@dataclass(frozen=True)
class NameCheck:
    """The verdict on one name and its evidence (None where not measured).

    ``supported`` is True, False, or None (untested); ``reason`` says why in one phrase.
    ``write_rank_exact`` is False when the rank is X's place in the atlas's short list.
    """

    supported: bool | None
    reason: str
    peak_hits: int | None = None
    n_examples: int | None = None
    density: float | None = None
    write_rank: int | None = None
    write_rank_exact: bool = False
    corpus_count: int | None = None

    @property
    def verdict(self) -> str:
        return {True: SUPPORTED, False: NOT_SUPPORTED, None: UNTESTED}[self.supported]

    @property
    def mark(self) -> str:
        """✓ supported, ✗ not supported, ? untested."""
        return {True: "✓", False: "✗", None: "?"}[self.supported]

    @property
    def peak_share(self) -> float | None:
        if self.peak_hits is None or not self.n_examples:
            return None
        return self.peak_hits / self.n_examples

    def describe(self) -> str:
        """E.g. ``corpus check: ✗ not supported: 98% of corpus tokens positive (dense: > 90%)``."""
        return f"corpus check: {self.mark} {self.verdict}: {self.reason}"

    def fields(self) -> dict[str, Any]:
        """The :data:`CORPUS_FIELDS` of the signatures files."""
        values = (self.supported, self.reason, self.peak_share, self.density, self.write_rank,
                  self.corpus_count)  # fmt: skip
        return dict(zip(CORPUS_FIELDS, values, strict=True))

    @classmethod
    def from_fields(cls, rec: dict[str, Any] | None) -> NameCheck | None:
        """The check stored in a signatures record; None when it holds none (older files, or
        ``signatures`` run without ``--atlas``)."""
        if not rec or not isinstance(rec.get("corpus_reason"), str):
            return None
        ok = rec.get("corpus_supported")
        density = rec.get("corpus_density")
        return cls(
            supported=ok if isinstance(ok, bool) else None,
            reason=str(rec["corpus_reason"]),
            density=float(density) if isinstance(density, int | float) else None,
            write_rank=_int_or_none(rec.get("corpus_write_rank")),
            corpus_count=_int_or_none(rec.get("corpus_token_count")),
        )


def _int_or_none(value: Any) -> int | None:
    try:
        return None if value is None else int(value)
    except (TypeError, ValueError):
        return None


def _activation(probe: dict[str, Any]) -> float:
    try:
        v = float(probe.get("peak_activation"))  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return 0.0
    return v if math.isfinite(v) else 0.0


def _side(rec: dict[str, Any], cls: str, key: str) -> int:
    """+1 / -1: the sign of the summed activation over the probes that voted for the name
    (semantic: peak on X; Say X: functional peak pointing at X; relationship: every active
    probe), or over every active probe when none voted."""
    active = [p for p in rec.get("probes") or [] if p.get("peak_kind") not in (None, "none")]
    if cls == "semantic":
        voted = [p for p in active if token_key(str(p.get("peak_token") or "")) == key]
    elif cls == "say_x":
        voted = [p for p in active if p.get("peak_kind") == "functional"
                 and token_key(str(p.get("say_target") or "")) == key]  # fmt: skip
    else:
        voted = active
    return -1 if sum(_activation(p) for p in voted or active) < 0 else 1


def claim_from_record(rec: dict[str, Any] | None) -> NameClaim | None:
    """The claim of one ``signatures_*.json`` neuron record; None when it names nothing."""
    if not rec or not rec.get("name"):
        return None
    cls = str(rec.get("class") or "")
    token = rec.get(TOKEN_FIELD.get(cls, ""))
    if cls == "say_x" and not token:
        token = rec.get("say_x_token")
    if not isinstance(token, str) or not token_key(token):
        return None
    rank = _int_or_none(rec.get("say_x_write_rank")) if cls == "say_x" else None
    return NameClaim(int(rec["layer"]), int(rec["neuron"]), cls, token,
                     _side(rec, cls, token_key(token)), rank)  # fmt: skip


class CorpusCounts:
    """How often each normalised token occurs in an atlas's corpus windows."""

    def __init__(self, counts: dict[str, int]) -> None:
        self._counts = counts

    @classmethod
    def of(cls, atlas: Atlas) -> CorpusCounts:
        """The counts of ``atlas``, read once per atlas folder and windows file."""
        digest = str(atlas.manifest.get("windows", {}).get("tokens_sha256", ""))
        key = (str(Path(atlas.root).resolve()), digest)
        if key not in _COUNTS:
            while len(_COUNTS) >= _KEEP:
                _COUNTS.pop(next(iter(_COUNTS)))
            _COUNTS[key] = cls(_count(atlas))
        return _COUNTS[key]

    def __call__(self, token: str) -> int:
        return self._counts.get(token_key(token), 0)


_COUNTS: dict[tuple[str, str], CorpusCounts] = {}
_KEEP = 4  # atlases whose counts stay cached (a UI reads the same one on every redraw)


def _count(atlas: Atlas) -> dict[str, int]:
    from safetensors import safe_open

    from ..atlas import store

    with safe_open(str(Path(atlas.root) / store.WINDOWS), framework="numpy") as f:
        tokens = f.get_tensor("tokens")
    ids, n = np.unique(tokens[tokens >= 0], return_counts=True)
    out: dict[str, int] = {}
    for i, c in zip(ids.tolist(), n.tolist(), strict=True):  # distinct tokens, not positions
        key = token_key(atlas.token(int(i)))
        out[key] = out.get(key, 0) + int(c)
    return out


def _atlas_rank(rec: NeuronAtlas, key: str, side: int) -> tuple[int | None, int]:
    """X's 1-based place in the atlas's promoted list for ``side`` (None: absent), list size."""
    scores = rec.write_top if side > 0 else rec.write_bottom
    for i, s in enumerate(scores):
        if token_key(s.token) == key:
            return i + 1, len(scores)
    return None, len(scores)


def _pct(x: float) -> str:
    return f"{x:.0%}" if x >= 0.01 or x == 0 else f"{x:.1%}"


def judge(claim: NameClaim, rec: NeuronAtlas, count: int, top_n: int = DEFAULT_TOP_N) -> NameCheck:
    """Apply the module's rules to one claim, given the atlas's record of its neuron and the
    corpus count of its token."""
    key = token_key(claim.token)
    shown = repr(token_display(claim.token).strip())
    examples = rec.top if claim.side > 0 else rec.bottom
    hits = sum(token_key(e.tokens[e.position]) == key for e in examples)
    frac_pos = rec.stats.frac_positive
    density = None
    if math.isfinite(frac_pos):
        density = frac_pos if claim.side > 0 else 1.0 - frac_pos
    listed: int | None = None
    rank, exact = claim.write_rank, claim.write_rank is not None
    if not exact:
        rank, listed = _atlas_rank(rec, key, claim.side)

    def verdict(ok: bool | None, text: str) -> NameCheck:
        return NameCheck(ok, text, hits, len(examples), density, rank, exact, count)

    sign = "positive" if claim.side > 0 else "negative"
    rank_text = _rank_text(shown, rank, listed, top_n)
    if claim.cls == "say_x":
        if rank is not None:
            return verdict(rank <= top_n, rank_text)
        return verdict(False if listed is not None and listed >= top_n else None, rank_text)
    need = max(1, math.ceil(MIN_PEAK_SHARE * min(len(examples), count)))
    side_word = "top" if claim.side > 0 else "bottom"
    times = f"{count:,} time{'s' if count != 1 else ''}"
    peak_text = (
        f"{shown} peaks {hits} of {len(examples)} {side_word} examples (needs {need}; occurs "
        f"{times})"
        if count
        else f"{shown} does not occur in the atlas's corpus"
    )
    if examples and hits >= need:
        return verdict(True, peak_text)
    if density is not None and density > DENSE_MAX:
        dense = f"{_pct(density)} of corpus tokens {sign} (dense: > {_pct(DENSE_MAX)})"
        return verdict(False, f"{dense}; {peak_text}")
    if rank is not None and rank <= top_n:
        return verdict(True, rank_text)
    return verdict(None if count == 0 else False, f"{peak_text}; {rank_text}")


def _rank_text(shown: str, rank: int | None, listed: int | None, top_n: int) -> str:
    """X's write rank in words; ``listed`` is the atlas list's length when the rank came from
    it (None: the exact rank of the write check)."""
    if rank is not None:
        where = "" if listed is None else " in the atlas's list"
        return f"{shown} is promoted #{rank:,}{where} ({'<=' if rank <= top_n else '>'} {top_n})"
    if listed:
        return f"{shown} is not among the {listed} tokens the atlas keeps as most promoted"
    return f"no write scores rank {shown} (the atlas has none; the write check did not run)"


def check_claims(
    atlas: Atlas, claims: Sequence[NameClaim | None], top_n: int = DEFAULT_TOP_N
) -> list[NameCheck | None]:
    """:func:`judge` every claim against ``atlas`` (None stays None: nothing named)."""
    counts = CorpusCounts.of(atlas) if any(c is not None for c in claims) else None
    out: list[NameCheck | None] = []
    for c in claims:
        if c is None or counts is None:
            out.append(None)
        elif c.layer not in atlas.layers:
            out.append(NameCheck(None, f"layer {c.layer} is not in the atlas"))
        else:
            out.append(judge(c, atlas.neuron(c.layer, c.neuron), counts(c.token), top_n))
    return out


def check_record(
    atlas: Atlas, rec: dict[str, Any] | None, top_n: int = DEFAULT_TOP_N
) -> NameCheck | None:
    """The corpus check of one signatures record against ``atlas`` (None: it names nothing)."""
    return check_claims(atlas, [claim_from_record(rec)], top_n)[0]


def shown_check(
    rec: dict[str, Any] | None,
    atlas: Atlas | None = None,
    run_manifest: dict[str, Any] | None = None,
    top_n: int = DEFAULT_TOP_N,
) -> NameCheck | None:
    """The corpus check a UI shows for a signatures record: made now against ``atlas`` when one
    is open beside the run (``run_manifest``) and of the same model, else the one stored in the
    record by ``signatures --atlas``; None when the record names nothing or holds no check."""
    stored = NameCheck.from_fields(rec)
    if atlas is None or claim_from_record(rec) is None:
        return stored
    diff = model_mismatch(run_manifest or {}, atlas.manifest)
    if diff is None:
        return check_record(atlas, rec, top_n)
    return stored or NameCheck(None, f"the open atlas is of another model than the run ({diff})")


_IGNORED_SOURCE_KEYS = ("kind", "location")  # where the weights were read from, not what


def model_mismatch(run_manifest: dict[str, Any], atlas_manifest: dict[str, Any]) -> str | None:
    """The first way a run's model differs from an atlas's, e.g. ``model gemma-a (run) vs
    gemma-b (atlas)``; None when they agree.

    Compares the model name, the shape, and every key both models' ``source`` records hold
    (architecture, revision, vocabulary size, and a weights fingerprint where recorded), but
    not where the weights were read from.
    """
    model = atlas_manifest.get("model") or {}
    pairs: list[tuple[str, Any, Any]] = [
        ("model", run_manifest.get("model_name"), model.get("name")),
        ("layers", run_manifest.get("n_layers"), model.get("n_layers")),
        ("neurons per layer", run_manifest.get("d_mlp"), model.get("d_mlp")),
    ]
    run_src = run_manifest.get("model") or {}
    atlas_src = model.get("source") or {}
    if isinstance(run_src, dict) and isinstance(atlas_src, dict):
        for k in sorted(set(run_src) & set(atlas_src)):
            if k not in _IGNORED_SOURCE_KEYS:
                pairs.append((k, run_src[k], atlas_src[k]))
    for what, a, b in pairs:
        if a is not None and b is not None and a != b:
            return f"{what} {a} (run) vs {b} (atlas)"
    return None


def check_same_model(run: Run, atlas: Atlas) -> None:
    """Refuse an atlas of another model than the run's.

    Raises:
        BadArgumentError: names the difference and the fix.
    """
    diff = model_mismatch(run.manifest, atlas.manifest)
    if diff is not None:
        raise BadArgumentError(
            f"the atlas {atlas.root} was not built with the run's model ({diff}): give an atlas "
            f"of {run.model_name} (neuron-signatures atlas --model_name {run.model_name})"
        )


def summary(checks: Sequence[NameCheck | None]) -> dict[str, int]:
    """``{"supported": n, "not supported": n, "untested": n}`` over the named neurons."""
    out = {SUPPORTED: 0, NOT_SUPPORTED: 0, UNTESTED: 0}
    for c in checks:
        if c is not None:
            out[c.verdict] += 1
    return out


def summary_line(checks: Sequence[NameCheck | None], where: str) -> str:
    """E.g. ``Corpus check (atlas A): 3 of 11 names hold, 7 not supported, 1 untested``."""
    s = summary(checks)
    n = sum(s.values())
    return (
        f"Corpus check ({where}): {s[SUPPORTED]} of {n} names hold, "
        f"{s[NOT_SUPPORTED]} not supported, {s[UNTESTED]} untested"
    )


@dataclass(frozen=True)
class CorpusReport:
    """The corpus checks of a signatures result (``[K]``, None where nothing is named) and the
    atlas they were made against."""

    checks: list[NameCheck | None]
    atlas: str
    model_name: str
    tokens: int
    top_n: int

    def meta(self) -> dict[str, Any]:
        """How the check was made, for the meta file."""
        return {
            "status": "checked",
            "atlas": self.atlas,
            "model_name": self.model_name,
            "atlas_tokens": self.tokens,
            "min_peak_share": MIN_PEAK_SHARE,
            "dense_max": DENSE_MAX,
            "write_top_n": self.top_n,
            "counts": summary(self.checks),
        }


def check_atlas(
    atlas: Atlas, claims: Sequence[NameClaim | None], top_n: int = DEFAULT_TOP_N
) -> CorpusReport:
    """:func:`check_claims` with the atlas it used recorded."""
    checks = check_claims(atlas, claims, top_n)
    return CorpusReport(checks, str(atlas.root), atlas.model_name, atlas.tokens_seen, top_n)
