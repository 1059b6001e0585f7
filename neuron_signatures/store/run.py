"""A run folder opened for reading: its prompts, layers and the activation reads every layout
shares (:class:`Run`); :mod:`.reader` opens our shards, :mod:`.legacy` the prototype's file."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from ..errors import BadArgumentError


@dataclass(frozen=True)
class PromptRecord:
    """One prompt of a run, as the manifest describes it.

    Attributes:
        index: position in the run (manifest order).
        probe_id: the prompt id.
        text: the prompt text.
        token_ids: token ids, BOS included when the run prepended it.
        tokens: lossless token strings (tokenizer pieces).
        tokens_ascii: the prototype's sanitised token strings.
        concept, concept_type: from the prompt file, when given.
    """

    index: int
    probe_id: str
    text: str
    token_ids: list[int]
    tokens: list[str]
    tokens_ascii: list[str]
    concept: str | None = None
    concept_type: str | None = None
    extra: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def seq_len(self) -> int:
        return len(self.token_ids)


class ActivationSource(Protocol):
    """Where a block of prompts' activations is read from (a shard, a prototype prompt)."""

    def rows(self, layer_pos: int, start: int, stop: int) -> np.ndarray: ...
    def column(self, layer_pos: int, neuron: int, start: int, stop: int) -> np.ndarray: ...
    def block(self, layer_pos: int) -> np.ndarray: ...


@dataclass(frozen=True)
class Block:
    """A group of prompts stored together, for streaming whole-run statistics.

    ``acts(layer)`` returns ``[n_tokens, d_mlp]`` float32 for the block's tokens;
    prompt ``prompt_indices[i]`` occupies rows ``starts[i] : starts[i] + lengths[i]``.
    """

    run: Run
    source: ActivationSource
    prompt_indices: list[int]
    starts: list[int]
    lengths: list[int]

    def acts(self, layer: int) -> np.ndarray:
        return self.source.block(self.run.layer_pos(layer))

    @property
    def n_tokens(self) -> int:
        return int(sum(self.lengths))


class Run:
    """A run folder opened for reading. Use :func:`open_run`."""

    def __init__(self, run_dir: Path, manifest: dict[str, Any]) -> None:
        self.run_dir = run_dir
        self.manifest = manifest
        self.format_version: int = int(manifest.get("format_version", 1))
        self.model_name: str = str(manifest.get("model_name", "unknown"))
        self.hook_name: str = str(manifest.get("hook_name", "blocks.{l}.mlp.hook_post"))
        self.d_mlp: int = int(manifest["d_mlp"])
        self.n_layers: int = int(manifest["n_layers"])
        self.layers: list[int] = [int(x) for x in manifest.get("layers", range(self.n_layers))]
        self._layer_pos = {layer: i for i, layer in enumerate(self.layers)}
        self.prompts: list[PromptRecord] = [
            prompt_record(i, p) for i, p in enumerate(manifest["prompts"])
        ]
        self._by_id = {p.probe_id: p.index for p in self.prompts}

    # -- metadata --------------------------------------------------------------------------
    @property
    def n_prompts(self) -> int:
        return len(self.prompts)

    @cached_property
    def n_tokens(self) -> int:
        return sum(p.seq_len for p in self.prompts)

    @property
    def save_dtype(self) -> str:
        return str(self.manifest.get("save_dtype", "unknown"))

    @property
    def prepend_bos(self) -> bool:
        return bool(self.manifest.get("prepend_bos", True))

    def layer_pos(self, layer: int) -> int:
        """Position of model layer ``layer`` in the stored tensors (runs may hold a subset)."""
        if layer not in self._layer_pos:
            raise BadArgumentError(
                f"layer {layer} is not in this run (captured layers: {_ranges(self.layers)})"
            )
        return self._layer_pos[layer]

    def check_neuron(self, layer: int, neuron: int) -> None:
        self.layer_pos(layer)
        if not 0 <= neuron < self.d_mlp:
            raise BadArgumentError(f"neuron {neuron} is out of range: use 0..{self.d_mlp - 1}")

    def prompt_index(self, key: str | int) -> int:
        """Resolve a prompt by id first, then by integer index (negative counts from the end)."""
        if isinstance(key, str) and key in self._by_id:
            return self._by_id[key]
        try:
            i = int(key)
        except (TypeError, ValueError):
            raise BadArgumentError(
                f"no prompt with id {key!r} in {self.run_dir}; ids look like "
                f"{self.prompts[0].probe_id!r} (or give an index 0..{self.n_prompts - 1})"
            ) from None
        if not -self.n_prompts <= i < self.n_prompts:
            raise BadArgumentError(
                f"prompt index {i} is out of range: the run has {self.n_prompts} prompts"
            )
        return i % self.n_prompts

    def prompt(self, key: str | int) -> PromptRecord:
        return self.prompts[self.prompt_index(key)]

    # -- activations -----------------------------------------------------------------------
    def _location(self, index: int) -> tuple[ActivationSource, int]:
        raise NotImplementedError

    def prompt_layer(self, key: str | int, layer: int) -> np.ndarray:
        """``[seq, d_mlp]`` activations of one prompt at one layer."""
        i = self.prompt_index(key)
        src, start = self._location(i)
        return src.rows(self.layer_pos(layer), start, start + self.prompts[i].seq_len)

    def prompt_acts(self, key: str | int, layers: Sequence[int] | None = None) -> np.ndarray:
        """``[n_layers, seq, d_mlp]`` activations of one prompt (all captured layers by default)."""
        i = self.prompt_index(key)
        src, start = self._location(i)
        stop = start + self.prompts[i].seq_len
        layers = self.layers if layers is None else layers
        return np.stack([src.rows(self.layer_pos(layer), start, stop) for layer in layers])

    def prompt_neuron(self, key: str | int, layer: int, neuron: int) -> np.ndarray:
        """``[seq]`` activations of one neuron on one prompt."""
        self.check_neuron(layer, neuron)
        i = self.prompt_index(key)
        src, start = self._location(i)
        return src.column(self.layer_pos(layer), neuron, start, start + self.prompts[i].seq_len)

    def neuron(self, layer: int, neuron: int) -> list[np.ndarray]:
        """One neuron across every prompt: a list of ``[seq_len]`` arrays in run order."""
        self.check_neuron(layer, neuron)
        lp = self.layer_pos(layer)
        out: list[np.ndarray] = [np.empty(0, np.float32)] * self.n_prompts
        for block in self.iter_blocks():
            end = max(s + n for s, n in zip(block.starts, block.lengths, strict=True))
            col = block.source.column(lp, neuron, 0, end)
            for pi, s, n in zip(block.prompt_indices, block.starts, block.lengths, strict=True):
                out[pi] = col[s : s + n]
        return out

    def iter_blocks(self) -> Iterator[Block]:
        """Stream the run block by block (a shard, or one prompt of a prototype run)."""
        raise NotImplementedError


def prompt_record(i: int, p: dict[str, Any]) -> PromptRecord:
    token_ids = [int(t) for t in p.get("token_ids", [])]
    tokens_ascii = list(p.get("tokens_ascii", []))
    tokens = list(p.get("tokens", tokens_ascii))
    return PromptRecord(
        index=i,
        probe_id=str(p.get("probe_id", i)),
        text=str(p.get("text", "")),
        token_ids=token_ids,
        tokens=tokens,
        tokens_ascii=tokens_ascii,
        concept=p.get("concept"),
        concept_type=p.get("concept_type"),
        extra=p,
    )


def _ranges(values: Sequence[int]) -> str:
    if not values:
        return "none"
    if list(values) == list(range(values[0], values[-1] + 1)):
        return f"{values[0]}..{values[-1]}"
    return ",".join(map(str, values))
