"""Atlas view state: which neuron of an atlas is on screen, with clamping and a record cache.

Pure Python over the atlas reader (no Textual), like :mod:`.state` for runs. Reading a record
(:meth:`AtlasState.read`) touches nothing but the atlas, so the screen can run it in a worker
thread; only the main thread files the result in the cache (:meth:`AtlasState.remember`).
"""

from __future__ import annotations

from collections import OrderedDict

import numpy as np

from ..atlas import Atlas, NeuronAtlas
from ..errors import BadArgumentError
from ..neurons import NeuronId, parse_neuron
from .state import parse_int

_CACHE_SIZE = 64


class AtlasState:
    """Where the atlas view is: the layer (one of the atlas's layers), the neuron and the view.

    Relative moves clamp at the edges; absolute jumps (dialogs, flags) reject values out of range
    with :class:`BadArgumentError`, so a bad target leaves the view as it was.

    Attributes:
        atlas: the opened atlas.
        layer_pos: index into ``atlas.layers``.
        neuron: the neuron index in its layer.
        show_bottom: whether the bottom examples are shown under the top ones.
    """

    def __init__(
        self, atlas: Atlas, *, layer: int | None = None, neuron: int = 0, show_bottom: bool = True
    ) -> None:
        if not atlas.layers:
            raise BadArgumentError(f"atlas {atlas.root} holds no layers: build it again")
        self.atlas = atlas
        self.show_bottom = show_bottom
        self._cache: OrderedDict[tuple[int, int], NeuronAtlas] = OrderedDict()
        self.layer_pos = self.layer_pos_of(atlas.layers[0] if layer is None else layer)
        self.neuron = 0
        self.goto_neuron(neuron)

    # -- where we are ----------------------------------------------------------------------
    @property
    def layer(self) -> int:
        return self.atlas.layers[self.layer_pos]

    @property
    def key(self) -> tuple[int, int]:
        """``(layer, neuron)`` on screen."""
        return self.layer, self.neuron

    def layer_pos_of(self, layer: int) -> int:
        """Position of ``layer`` in the atlas's layers, or :class:`BadArgumentError`."""
        try:
            return self.atlas.layers.index(layer)
        except ValueError:
            raise BadArgumentError(
                f"layer {layer} is not in the atlas {self.atlas.root}: it has layers "
                f"{_layer_list(self.atlas.layers)}"
            ) from None

    # -- records ---------------------------------------------------------------------------
    def cached(self, layer: int | None = None, neuron: int | None = None) -> NeuronAtlas | None:
        """The record of a neuron (default: the one on screen) if it was read before."""
        key = (self.layer if layer is None else layer, self.neuron if neuron is None else neuron)
        rec = self._cache.get(key)
        if rec is not None:
            self._cache.move_to_end(key)
        return rec

    def read(self, layer: int, neuron: int) -> NeuronAtlas:
        """Read one neuron's record from the atlas (thread-safe: it does not touch the cache)."""
        return self.atlas.neuron(layer, neuron)

    def remember(self, rec: NeuronAtlas) -> None:
        self._cache[(rec.layer, rec.index)] = rec
        self._cache.move_to_end((rec.layer, rec.index))
        if len(self._cache) > _CACHE_SIZE:
            self._cache.popitem(last=False)

    def record(self) -> NeuronAtlas:
        """The record on screen, read now when it is not cached (blocking: outside the UI)."""
        rec = self.cached()
        if rec is None:
            rec = self.read(self.layer, self.neuron)
            self.remember(rec)
        return rec

    # -- relative moves (clamped) ----------------------------------------------------------
    def move_layer(self, delta: int) -> None:
        self.layer_pos = int(np.clip(self.layer_pos + delta, 0, len(self.atlas.layers) - 1))

    def move_neuron(self, delta: int) -> None:
        self.neuron = int(np.clip(self.neuron + delta, 0, self.atlas.d_mlp - 1))

    def toggle_bottom(self) -> None:
        self.show_bottom = not self.show_bottom

    # -- absolute jumps (validated) --------------------------------------------------------
    def goto_layer(self, layer: int) -> None:
        self.layer_pos = self.layer_pos_of(layer)

    def goto_neuron(self, neuron: int) -> None:
        if not 0 <= neuron < self.atlas.d_mlp:
            raise BadArgumentError(
                f"neuron {neuron} is out of range: use 0..{self.atlas.d_mlp - 1}"
            )
        self.neuron = neuron

    def jump(self, layer: int, neuron: int) -> None:
        """Go to neuron ``neuron`` of ``layer``; both are checked before anything changes."""
        layer_pos = self.layer_pos_of(layer)
        if not 0 <= neuron < self.atlas.d_mlp:
            raise BadArgumentError(
                f"neuron {neuron} is out of range: this atlas has 0..{self.atlas.d_mlp - 1}"
            )
        self.layer_pos, self.neuron = layer_pos, neuron

    def goto(self, nid: NeuronId) -> None:
        self.jump(nid.layer, nid.index)

    # -- parsing dialog input --------------------------------------------------------------
    def parse_layer(self, text: str) -> int:
        """A layer typed in the dialog: ``3`` or ``L3`` (one of the atlas's layers)."""
        text = text.strip()
        if text[:1] in ("L", "l") and text[1:].strip().isdigit():
            text = text[1:]
        value = parse_int(text, "layer", 0, self.atlas.n_layers - 1)
        self.layer_pos_of(value)
        return value

    def parse_neuron(self, text: str) -> NeuronId:
        """A neuron typed in the go-to dialog: ``42`` (in the current layer), ``L17/N1152``,
        ``17:1152`` or ``17/1152`` (any layer of the atlas)."""
        if text.strip().lstrip("+-").isdigit():
            return NeuronId(self.layer, parse_int(text, "neuron", 0, self.atlas.d_mlp - 1))
        nid = parse_neuron(text, self.atlas.n_layers, self.atlas.d_mlp)
        self.layer_pos_of(nid.layer)
        return nid

    def layers_hint(self) -> str:
        """The atlas's layers for a dialog hint: ``layer 0..17`` or ``layers 1, 4, 9``."""
        return _layer_list(self.atlas.layers)


def _layer_list(layers: list[int]) -> str:
    if len(layers) > 1 and layers == list(range(layers[0], layers[-1] + 1)):
        return f"{layers[0]}..{layers[-1]}"
    return ", ".join(map(str, layers))
