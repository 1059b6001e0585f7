"""What :func:`~.compute.compute_signatures` returns (:class:`SignatureResult`), and the Say X
write check's result that it carries (:class:`WriteCheck`, made by :mod:`.write_check`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .config import NeuronSelection, SignatureConfig
from .corpus_check import CorpusReport
from .metrics import DistributionStats, ProbeMetrics, TokenTables
from .naming import Aggregates, Classification

CHECKED, SKIPPED, NO_SAY_X = "checked", "skipped", "no say_x neuron"


@dataclass(frozen=True)
class WriteCheck:
    """Per selected neuron (``[K]`` lists; None where the neuron is not Say X): the rank of its
    named token among all tokens by write score, whether it agrees, and its most promoted
    token. ``status`` is :data:`CHECKED`, :data:`SKIPPED` or :data:`NO_SAY_X`."""

    rank: list[int | None]
    agrees: list[bool | None]
    top_token: list[str | None]
    top_n: int
    status: str
    model_name: str | None = None
    vocab_size: int | None = None

    def meta(self) -> dict[str, Any]:
        """How the check was made, for the meta file."""
        return {
            "status": self.status,
            "model_name": self.model_name,
            "top_n": self.top_n,
            "vocab_size": self.vocab_size,
            "direction": "W_out column x post-MLP gain x final-norm gain, signed like the "
            "activation at the Say X peaks; rank over the whole vocabulary",
        }


@dataclass(frozen=True)
class SignatureResult:
    """Everything :func:`.compute.compute_signatures` found (arrays over the K selected neurons);
    ``write_check`` is None until :func:`.compute.with_write_check` ran, ``corpus_check`` until
    :func:`.compute.with_corpus_check` did."""

    selection: NeuronSelection
    seed_index: int
    config: SignatureConfig
    tables: TokenTables
    stats: DistributionStats
    metrics: ProbeMetrics
    seed: ProbeMetrics
    aggregates: Aggregates
    classification: Classification
    write_check: WriteCheck | None = None
    corpus_check: CorpusReport | None = None
