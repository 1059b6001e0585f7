"""The ranked-neurons side panel's model: which ranking file is shown and which row is current.

Rankings come from :func:`neuron_signatures.analysis.results.list_rankings` (``top_neurons.json``,
influence files, signatures); signatures also label the current neuron, read from every
``signatures_*.json`` (newest wins) or from one file picked with
:meth:`RankingCursor.cycle_signatures`. Pure Python, no Textual.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..analysis.results import (
    SIGNATURES_FILE,
    RankedNeuron,
    Ranking,
    SayXCheck,
    analysis_dir,
    list_rankings,
    load_signatures,
    say_x_check,
    signature_files,
)
from ..signatures.corpus_check import NameCheck, shown_check

if TYPE_CHECKING:
    from ..atlas import Atlas


@dataclass(frozen=True)
class Target:
    """Where a ranked row sends the browser: a neuron, and for influence rows a prompt and token."""

    layer: int
    neuron: int
    prompt_id: str | None = None
    ctx_idx: int | None = None


class RankingCursor:
    """The rankings of a run and a cursor into one of them.

    ``row`` is ``-1`` before the first step, so ``step(+1)`` lands on rank 1.
    """

    def __init__(
        self,
        rankings: list[Ranking],
        signatures: dict[tuple[int, int], dict] | None = None,
        folder: Path | None = None,
    ) -> None:
        self.rankings = rankings
        self.signatures = signatures or {}
        self.folder = folder
        # signatures_*.json of the folder, newest first; ``sig_which`` -1 means all of them merged
        self.signature_files = signature_files(folder) if folder is not None else []
        self.sig_which = -1
        self.which = 0
        self.row = -1
        self._index: dict[tuple[int, int], int] | None = None
        # an atlas open beside the run: names are checked against its corpus (corpus_check)
        self.atlas: Atlas | None = None
        self.run_manifest: dict[str, Any] | None = None

    @classmethod
    def load(cls, run_dir: str | Path) -> RankingCursor:
        """Read every ranking and signature file of ``<run_dir>/analysis`` (missing: empty)."""
        folder = analysis_dir(run_dir)
        return cls(list_rankings(folder), load_signatures(folder), folder)

    @property
    def signatures_source(self) -> str:
        """Which signatures are used: ``all N files (newest wins)`` or one file's name."""
        if self.sig_which < 0:
            n = len(self.signature_files)
            return "all files (newest wins)" if n != 1 else self.signature_files[0].name
        return self.signature_files[self.sig_which].name

    def cycle_signatures(self) -> str | None:
        """Use the next signatures file: all merged, then each file, newest first; None if none."""
        if not self.signature_files or self.folder is None:
            return None
        n = len(self.signature_files)
        self.sig_which = (self.sig_which + 2) % (n + 1) - 1  # -1, 0, .., n-1, -1, ...
        file = None if self.sig_which < 0 else self.signature_files[self.sig_which]
        self.signatures = load_signatures(self.folder, file)
        return self.signatures_source

    @property
    def ranking(self) -> Ranking | None:
        return self.rankings[self.which] if self.rankings else None

    @property
    def rows(self) -> list[RankedNeuron]:
        return self.ranking.neurons if self.ranking else []

    def locate(self, layer: int, neuron: int) -> int | None:
        """Row of ``(layer, neuron)`` in the current ranking (its first row), or None."""
        if self._index is None:
            self._index = {}
            for i, r in enumerate(self.rows):
                self._index.setdefault((r.layer, r.neuron), i)
        return self._index.get((layer, neuron))

    def cycle(self, delta: int = 1) -> Ranking | None:
        """Show the next (or previous) ranking file; the cursor goes back before rank 1."""
        if self.rankings:
            self.which = (self.which + delta) % len(self.rankings)
            self.row = -1
            self._index = None
        return self.ranking

    def step(self, delta: int) -> RankedNeuron | None:
        """Move the cursor ``delta`` rows (clamped); None if the ranking is empty."""
        if not self.rows:
            return None
        self.row = max(0, min(len(self.rows) - 1, self.row + delta))
        return self.rows[self.row]

    def select(self, row: int) -> RankedNeuron:
        self.row = row
        return self.rows[row]

    def target(self, ranked: RankedNeuron) -> Target:
        """Where ``ranked`` points: influence rows also name their prompt and token position."""
        meta = self.ranking.meta if self.ranking else {}
        ctx = ranked.fields.get("ctx_idx")
        prompt_id = ranked.fields.get("prompt_id", meta.get("prompt_id"))
        return Target(
            ranked.layer,
            ranked.neuron,
            None if prompt_id is None else str(prompt_id),
            None if ctx is None else int(ctx),
        )

    def signature(self, layer: int, neuron: int) -> str | None:
        """``"class: name"`` of a neuron from ``signatures_*.json``, or None."""
        sig = self.signatures.get((layer, neuron))
        if not sig:
            return None
        text = f"{sig.get('class') or ''}: {sig.get('name') or ''}".strip(": ")
        return text or None

    def signature_file(self, layer: int, neuron: int) -> str | None:
        """The file the neuron's signature was read from, or None."""
        sig = self.signatures.get((layer, neuron))
        return str(sig[SIGNATURES_FILE]) if sig and SIGNATURES_FILE in sig else None

    def say_x(self, layer: int, neuron: int) -> SayXCheck | None:
        """The Say X write-score check of the neuron's signature, when it has one."""
        return say_x_check(self.signatures.get((layer, neuron)))

    def corpus(self, layer: int, neuron: int) -> NameCheck | None:
        """The corpus check of the neuron's name: against :attr:`atlas` when one is open, else
        the one stored in its signatures file, if any."""
        sig = self.signatures.get((layer, neuron))
        return shown_check(sig, self.atlas, self.run_manifest)
