"""Read an atlas: ``open_atlas(A).neuron(layer, n)`` → :class:`NeuronAtlas` (no torch, no model).

One neuron is read from the memory-mapped layer file (a few rows of each array); statistics come
out of the exact integer sums (:mod:`.exact`), intervals out of the exact histogram
(:mod:`.record`).
"""

from __future__ import annotations

import json
from fractions import Fraction
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import BadArgumentError, IncompleteRunError
from . import store
from .exact import unit_bits
from .priority import legacy_priority, token_priority
from .record import (
    Example,
    Interval,
    NeuronAtlas,
    NeuronStats,
    WriteScore,
    equal_count_intervals,
)
from .search import TextSearch, TokenIndex, TokenSearch, search_text, search_token

__all__ = [
    "Atlas",
    "Example",
    "Interval",
    "NeuronAtlas",
    "NeuronStats",
    "WriteScore",
    "equal_count_intervals",
    "open_atlas",
]

SUMS = ("sum", "sumsq", "sum3", "sum4")  # exact totals of x .. x^4


def fixed_value(digits: Any) -> Any:
    """The exact integer of ``[..., D]`` base-2^32 digits (most significant first); Python ints."""
    d = np.asarray(digits).astype(object)
    out = d[..., 0]
    for i in range(1, d.shape[-1]):
        out = out * 2**32 + d[..., i]
    return out


def exact_total(row: dict[str, Any], power: int) -> Fraction:
    """``sum x^power`` of one neuron's row, exactly."""
    digits = np.asarray(row[SUMS[power - 1]])
    return Fraction(int(fixed_value(digits)), 2 ** unit_bits(power, digits.shape[-1]))


def nonfinite_count(row: dict[str, Any]) -> int | None:
    """Non-finite values of the neuron (``None``: not recorded, atlas format version < 3)."""
    return int(row["n_nonfinite"]) if "n_nonfinite" in row else None


def shape_moments(row: dict[str, Any], n: int) -> tuple[float, float]:
    """``(skewness, excess kurtosis)`` from the exact sums of ``x`` .. ``x^4``, computed in exact
    rational arithmetic (no cancellation); NaN when unknown (see :class:`NeuronStats`)."""
    nan = float("nan")
    if n == 0 or "sum4" not in row or int(row.get("moments_bad", 0)) or nonfinite_count(row):
        return nan, nan
    mu, e2, e3, e4 = (exact_total(row, k) / n for k in (1, 2, 3, 4))
    m2 = e2 - mu * mu
    if m2 <= 0:
        return nan, nan
    m3 = e3 - 3 * mu * e2 + 2 * mu**3
    m4 = e4 - 4 * mu * e3 + 6 * mu * mu * e2 - 3 * mu**4
    return float(m3 / m2) / float(m2) ** 0.5, float(m4 / (m2 * m2)) - 3.0


def _exact_stats(row: dict[str, Any], n: int, threshold: float) -> NeuronStats:
    nan = float("nan")
    bad = nonfinite_count(row)
    if n == 0:
        return NeuronStats(0, nan, nan, nan, nan, nan, nan, nan, threshold, nonfinite=bad)
    mu, e2 = exact_total(row, 1) / n, exact_total(row, 2) / n
    var = float(max(Fraction(0), e2 - mu * mu))
    skew, kurt = shape_moments(row, n)
    mean = float(mu)
    if bad:  # a NaN or inf touches every moment
        mean = var = nan
    return NeuronStats(
        count=n,
        mean=mean,
        variance=var,
        std=var**0.5,
        min=float(row["min"]),
        max=float(row["max"]),
        frac_positive=int(row["n_pos"]) / n,
        frac_above_threshold=int(row["n_thr"]) / n,
        threshold=threshold,
        skewness=skew,
        kurtosis=kurt,
        nonfinite=bad,
    )


class Atlas:
    """An opened atlas folder (see :mod:`.store` for the layout)."""

    def __init__(self, root: Path, manifest: dict[str, Any]) -> None:
        self.root = root
        self.manifest = manifest
        self.layers: list[int] = list(manifest["layers"])
        self.n_layers = int(manifest["model"]["n_layers"])
        self.d_mlp = int(manifest["model"]["d_mlp"])
        self.model_name = str(manifest["model"]["name"])
        self.ctx_len = int(manifest["params"]["ctx_len"])
        self.seed = int(manifest["params"]["seed"])
        self.edges = np.asarray(manifest["statistics"]["histogram"]["edges"], dtype=np.float64)
        # format version 3 salted the sampling priorities per neuron (see .priority)
        self.salted = int(manifest.get("format_version", store.FORMAT_VERSION)) >= 3

    @property
    def tokens_seen(self) -> int:
        return int(self.manifest["progress"].get("tokens_seen", 0))

    def _open(self, path: Path) -> Any:
        return store.open_numpy(path)

    @cached_property
    def _windows(self) -> dict[str, np.ndarray]:
        with self._open(self.root / store.WINDOWS) as f:
            return {k: f.get_tensor(k) for k in ("length", "doc", "offset")}

    @cached_property
    def vocab(self) -> list[str]:
        return list(json.loads((self.root / store.VOCAB).read_text(encoding="utf-8")))

    @cached_property
    def documents(self) -> list[dict[str, Any]]:
        text = (self.root / store.DOCUMENTS).read_text(encoding="utf-8")
        return [json.loads(line) for line in text.splitlines()]

    def token(self, token_id: int) -> str:
        v = self.vocab
        return v[token_id] if 0 <= token_id < len(v) else f"<{token_id}>"

    def tokens(self, token_ids: list[int]) -> list[str]:
        v = self.vocab
        if token_ids and min(token_ids) >= 0 and max(token_ids) < len(v):
            return [v[i] for i in token_ids]
        return [self.token(i) for i in token_ids]

    @cached_property
    def _tokens(self) -> Any:
        """The windows' token ids, memory-mapped once (a slice reads one window)."""
        return self._open(self.root / store.WINDOWS).get_slice("tokens")

    def window_ids(self, window: int) -> list[int]:
        n = int(self._windows["length"][window])
        return [int(t) for t in self._tokens[window][:n].tolist()]

    def example(self, g: int, value: float, acts: np.ndarray | None = None) -> Example:
        """The :class:`Example` of token ``g = window * ctx_len + position``."""
        w, pos = divmod(int(g), self.ctx_len)
        ids = self.window_ids(w)
        doc = int(self._windows["doc"][w])
        docs = self.documents
        return Example(
            window=w,
            position=pos,
            document=doc,
            doc_token=int(self._windows["offset"][w]) + pos - 1 if pos else -1,
            value=float(value),
            token_ids=ids,
            tokens=self.tokens(ids),
            acts=None if acts is None else np.asarray(acts[: len(ids)], np.float64).tolist(),
            meta=dict(docs[doc]) if doc < len(docs) else {},
        )

    def _row(self, layer: int, index: int) -> dict[str, Any]:
        if layer not in self.layers:
            raise BadArgumentError(
                f"layer {layer} is not in the atlas {self.root} (layers {self.layers})"
            )
        if not 0 <= index < self.d_mlp:
            raise BadArgumentError(f"neuron {index} is out of range 0..{self.d_mlp - 1}")
        with self._open(store.layer_file(self.root, layer)) as f:
            row = {k: f.get_slice(k)[index] for k in f.keys() if k != "n"}  # noqa: SIM118
            row["n"] = int(f.get_tensor("n")[0])
        return row

    def neuron(self, layer: int, index: int, n_intervals: int = 10) -> NeuronAtlas:
        """Statistics, histogram, examples, intervals and write scores of one neuron."""
        row = self._row(layer, index)
        threshold = float(self.manifest["params"]["density_threshold"])
        stats = _exact_stats(row, row["n"], threshold)
        counts = np.asarray(row["hist"], dtype=np.int64)
        sides = {}
        for side in ("top", "bot"):
            keep = row[f"{side}_g"] >= 0
            sides[side] = [
                self.example(g, v, a)
                for g, v, a in zip(
                    row[f"{side}_g"][keep],
                    row[f"{side}_val"][keep],
                    row[f"{side}_acts"][keep],
                    strict=True,
                )
            ]
        intervals = [
            self._interval(row, counts, a, b, stats, layer, index)
            for a, b in equal_count_intervals(counts, n_intervals)
        ]
        random_sample = self._uniform_sample(row, layer, index)
        pos, neg = self._write_scores(layer, index)
        return NeuronAtlas(
            layer=layer,
            index=index,
            stats=stats,
            histogram_edges=self.edges.tolist(),
            histogram_counts=counts.tolist(),
            top=sides["top"],
            bottom=sides["bot"],
            intervals=intervals,
            write_top=pos,
            write_bottom=neg,
            random_sample=random_sample,
        )

    def _lowest(
        self, row: dict[str, Any], a: int, b: int, layer: int, index: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """``(g, value)`` of the ``r`` lowest-priority tokens among bins ``a..b``' reservoirs,
        highest value first: a uniform sample (without replacement) of those bins' tokens."""
        g = row["samp_g"][a : b + 1].reshape(-1)
        v = row["samp_v"][a : b + 1].reshape(-1)
        keep = g >= 0
        g, v = g[keep], v[keep]
        r = row["samp_g"].shape[-1]
        if self.salted:
            prio = token_priority(g, self.seed, layer, index)
        else:
            prio = legacy_priority(g, self.seed)
        pick = np.argsort(prio)[:r]
        pick = pick[np.argsort(-v[pick], kind="stable")]
        return g[pick], v[pick]

    def _uniform_sample(self, row: dict[str, Any], layer: int, index: int) -> list[Example]:
        """``r`` tokens drawn uniformly from all the neuron's counted tokens.

        The ``r`` lowest priorities overall lie within each bin's ``r`` lowest, which the
        reservoirs hold: so the bottom-r of all reservoirs is the bottom-r of every token, a
        uniform draw (each bin is represented in proportion to its count). Atlases before format
        version 3 shared one priority per token across neurons: the draw is then uniform for each
        neuron but shared by all of them.
        """
        g, v = self._lowest(row, 0, row["samp_g"].shape[0] - 1, layer, index)
        return [self.example(int(t), float(x)) for t, x in zip(g, v, strict=True)]

    def _interval(
        self,
        row: dict[str, Any],
        counts: np.ndarray,
        a: int,
        b: int,
        stats: NeuronStats,
        layer: int,
        index: int,
    ) -> Interval:
        nb = len(counts)
        lo = max(float(self.edges[a - 1]) if a > 0 else -np.inf, stats.min)
        hi = min(float(self.edges[b]) if b < nb - 1 else np.inf, stats.max)
        g, v = self._lowest(row, a, b, layer, index)
        count = int(counts[a : b + 1].sum())
        return Interval(
            lo=lo,
            hi=hi,
            count=count,
            fraction=count / max(1, stats.count),
            samples=[self.example(int(t), float(x)) for t, x in zip(g, v, strict=True)],
        )

    def _write_scores(self, layer: int, index: int) -> tuple[list[WriteScore], list[WriteScore]]:
        path = self.root / store.WRITE_SCORES
        if not path.is_file():
            return [], []
        out = []
        with self._open(path) as f:
            for side in ("pos", "neg"):
                vals = f.get_slice(f"layer_{layer:03d}.{side}_val")[index]
                ids = f.get_slice(f"layer_{layer:03d}.{side}_id")[index]
                out.append(
                    [
                        WriteScore(self.token(int(i)), int(i), float(s))
                        for i, s in zip(ids, vals, strict=True)
                    ]
                )
        return out[0], out[1]

    def layer_stats(self, layer: int) -> dict[str, np.ndarray]:
        """Per-neuron ``mean, std, min, max, frac_positive, frac_above_threshold`` of a layer
        (float64; for rankings in the UIs; mean and std NaN where a value was not finite)."""
        with self._open(store.layer_file(self.root, layer)) as f:
            t = {k: f.get_tensor(k) for k in ("sum", "sumsq")}
            extra = {k: f.get_tensor(k) for k in ("n", "min", "max", "n_pos", "n_thr")}
            bad = f.get_tensor("n_nonfinite") if "n_nonfinite" in f.keys() else None  # noqa: SIM118
        n = max(1, int(extra["n"][0]))
        b1, b2 = (unit_bits(k, t[name].shape[-1]) for k, name in ((1, "sum"), (2, "sumsq")))
        s1, s2 = fixed_value(t["sum"]), fixed_value(t["sumsq"])
        var = ((s2 * n * 2 ** (2 * b1 - b2) - s1 * s1) / (n * n * 2 ** (2 * b1))).astype(np.float64)
        mean = (s1 / (n * 2**b1)).astype(np.float64)
        std = np.sqrt(np.maximum(var, 0.0))
        if bad is not None:  # NaN where a value was not finite, as in :meth:`neuron`
            mean, std = np.where(bad > 0, np.nan, mean), np.where(bad > 0, np.nan, std)
        return {
            "mean": mean,
            "std": std,
            "min": extra["min"].astype(np.float64),
            "max": extra["max"].astype(np.float64),
            "frac_positive": extra["n_pos"] / n,
            "frac_above_threshold": extra["n_thr"] / n,
        }

    @cached_property
    def token_index(self) -> TokenIndex:
        """The token of every top example of every layer, built once (for :meth:`search_token`)."""
        return TokenIndex(self)

    def search_token(
        self, token: str | int, top_n: int = 50, layers: list[int] | None = None
    ) -> TokenSearch:
        """Neurons whose top examples peak on ``token`` (:func:`.search.search_token`)."""
        return search_token(self, token, top_n=top_n, layers=layers)

    def search_text(
        self,
        text: str,
        top_n: int = 10,
        lm: Any = None,
        rank_by: str = "value",
        layers: list[int] | None = None,
    ) -> TextSearch:
        """Neurons ``text`` activates, per token and overall (:func:`.search.search_text`;
        runs the model, loading it when ``lm`` is ``None``)."""
        return search_text(self, text, top_n=top_n, lm=lm, rank_by=rank_by, layers=layers)


def open_atlas(path: str | Path, allow_incomplete: bool = False) -> Atlas:
    """Open the atlas folder ``path``.

    Raises:
        RunFormatError: not an atlas, or of another format version.
        IncompleteRunError: the build has not finished (unless ``allow_incomplete``).
    """
    root = Path(path)
    if root.name == store.MANIFEST and root.is_file():
        root = root.parent  # ``--atlas A/atlas.json``: the folder is meant
    manifest = store.read_manifest(root)
    if not manifest.get("complete") and not allow_incomplete:
        raise IncompleteRunError(
            f"atlas {root} is not finished: run `neuron-signatures atlas --out_dir {root} "
            "--resume` with the same flags"
        )
    return Atlas(root, manifest)
