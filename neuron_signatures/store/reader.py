"""Open a run folder and read activations without loading the whole run.

Two layouts are read through one API:

* format 2 (ours): ``activations/shard_*.safetensors``, one ``layer_<l>`` tensor per captured layer
  holding the tokens of several prompts back to back; memory-mapped with numpy, no torch import.
* format 1 (the prototype): ``activations.pt``, a dict ``probe_id -> [n_layers, seq, d_mlp]``,
  opened with ``torch.load(weights_only=True, mmap=True)`` so nothing arbitrary is unpickled.

Every read returns float32 numpy arrays, whatever the save dtype.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import IncompleteRunError, RunFormatError
from .legacy import _LegacyRun
from .manifest import ACTIVATIONS_DIR, read_manifest
from .run import ActivationSource, Block, Run
from .safetensors_np import SafetensorsFile, to_float32

MAX_OPEN_SHARDS = 32  # memory-mapped shards kept open per Run (one file descriptor each)


class _ShardSource:
    """One safetensors shard: ``layer_<l>`` tensors of shape ``[n_tokens, d_mlp]``."""

    def __init__(self, path: Path, layers: Sequence[int]) -> None:
        if not path.is_file():
            raise IncompleteRunError(
                f"shard {path} is missing: re-run the dump with --resume, or copy the whole run"
            )
        self._f = SafetensorsFile(path)
        self._names = [f"layer_{layer}" for layer in layers]

    def _raw(self, layer_pos: int) -> tuple[np.ndarray, str]:
        name = self._names[layer_pos]
        return self._f.raw(name), self._f.dtype(name)

    def rows(self, layer_pos: int, start: int, stop: int) -> np.ndarray:
        raw, dt = self._raw(layer_pos)
        return _detached(to_float32(raw[start:stop], dt), raw)

    def column(self, layer_pos: int, neuron: int, start: int, stop: int) -> np.ndarray:
        raw, dt = self._raw(layer_pos)
        return _detached(to_float32(raw[start:stop, neuron], dt), raw)

    def block(self, layer_pos: int) -> np.ndarray:
        """The whole shard at one layer: a view of the memory map for float32 (streamed, not
        kept; holding many blocks keeps their shards open)."""
        raw, dt = self._raw(layer_pos)
        return to_float32(raw, dt)


def _detached(arr: np.ndarray, raw: np.ndarray) -> np.ndarray:
    """A copy when ``arr`` views the memory map (float32): a prompt's rows or a neuron's column
    that a caller keeps must not keep the shard's file open."""
    return arr.copy() if np.may_share_memory(arr, raw) else arr


class _ShardedRun(Run):
    """Shards open lazily; at most :data:`MAX_OPEN_SHARDS` stay mapped (each holds a file
    descriptor), the least recently used closing first, so a run of thousands of shards never
    meets ``Too many open files``."""

    def __init__(self, run_dir: Path, manifest: dict[str, Any]) -> None:
        super().__init__(run_dir, manifest)
        self._shards: list[dict[str, Any]] = manifest.get("shards", [])
        self._open: OrderedDict[int, _ShardSource] = OrderedDict()
        for i, p in enumerate(manifest["prompts"]):
            if "shard" not in p or "shard_offset" not in p:
                raise RunFormatError(f"prompt {i} of {run_dir} has no shard location")

    def _source(self, shard: int) -> ActivationSource:
        src = self._open.get(shard)
        if src is not None:
            self._open.move_to_end(shard)
            return src
        name = self._shards[shard]["file"]
        src = self._open[shard] = _ShardSource(self.run_dir / ACTIVATIONS_DIR / name, self.layers)
        while len(self._open) > MAX_OPEN_SHARDS:
            self._open.popitem(last=False)  # its memmap closes once no array views it
        return src

    def _location(self, index: int) -> tuple[ActivationSource, int]:
        p = self.manifest["prompts"][index]
        return self._source(int(p["shard"])), int(p["shard_offset"])

    def iter_blocks(self) -> Iterator[Block]:
        members: dict[int, list[int]] = {}
        for i, p in enumerate(self.manifest["prompts"]):
            members.setdefault(int(p["shard"]), []).append(i)
        for shard in sorted(members):
            idx = sorted(members[shard], key=lambda i: self.manifest["prompts"][i]["shard_offset"])
            yield Block(
                self,
                self._source(shard),
                idx,
                [int(self.manifest["prompts"][i]["shard_offset"]) for i in idx],
                [self.prompts[i].seq_len for i in idx],
            )


def open_run(run_dir: str | Path, allow_incomplete: bool = False) -> Run:
    """Open a run folder (ours or the prototype's) for reading.

    Raises:
        RunFormatError: not a run folder, or an unknown format version.
        IncompleteRunError: the dump did not finish (unless ``allow_incomplete``).
    """
    path = Path(run_dir)
    manifest = read_manifest(path)
    if int(manifest.get("format_version", 1)) == 1 or "shards" not in manifest:
        return _LegacyRun(path, manifest)  # the prototype's activations.pt (torch on first read)
    if not manifest.get("complete", False) and not allow_incomplete:
        raise IncompleteRunError(
            f"{path} is an unfinished dump: finish it with the same dump command plus --resume"
        )
    return _ShardedRun(path, manifest)
