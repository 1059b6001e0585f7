"""Browser state: the current prompt, layer, neuron and token, with clamping and statistics.

Pure Python and numpy over the store's reader (no Textual), so every rule of the browser is
testable on its own. Only the prompt on screen is read: one neuron column of one prompt per view,
kept in a small cache so stepping back and forth does not hit the disk again.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

import numpy as np

from ..errors import BadArgumentError
from ..neurons import NeuronId, parse_neuron
from ..store import PromptRecord, Run

_CACHE_SIZE = 64


@dataclass(frozen=True)
class NeuronStats:
    """Statistics of one neuron on one prompt (over every token, BOS included, as the prototype).

    Attributes:
        max_val, max_idx: the signed maximum and its token position (the argmax row).
        min_val, min_idx: the signed minimum and its token position.
        mean, std: mean and population standard deviation.
        max_abs: the largest ``|activation|``; bars are drawn relative to it.
    """

    max_val: float
    max_idx: int
    min_val: float
    min_idx: int
    mean: float
    std: float
    max_abs: float


def neuron_stats(values: np.ndarray) -> NeuronStats:
    """Statistics of ``values: [seq]`` (at least one token)."""
    v = np.asarray(values, dtype=np.float64)
    imax, imin = int(np.argmax(v)), int(np.argmin(v))
    return NeuronStats(
        max_val=float(v[imax]),
        max_idx=imax,
        min_val=float(v[imin]),
        min_idx=imin,
        mean=float(v.mean()),
        std=float(v.std()),
        max_abs=float(np.abs(v).max()),
    )


def parse_int(text: str, what: str, lo: int, hi: int) -> int:
    """Parse a whole number typed in a dialog and check ``lo <= value <= hi``.

    Raises:
        BadArgumentError: with a message that says what to type instead.
    """
    try:
        value = int(text.strip())
    except ValueError:
        raise BadArgumentError(
            f"{text.strip()!r} is not a whole number: type a {what} {lo}..{hi}"
        ) from None
    if not lo <= value <= hi:
        raise BadArgumentError(f"{what} {value} is out of range: type {lo}..{hi}")
    return value


class BrowserState:
    """Where the browser is: prompt, layer, neuron, token position and view mode.

    Relative moves (arrow keys) clamp at the edges like the prototype; absolute jumps (dialogs,
    command-line flags) reject values out of range with :class:`BadArgumentError`.
    """

    def __init__(
        self,
        run: Run,
        *,
        prompt: str | int = 0,
        layer: int | None = None,
        neuron: int = 0,
        ctx_idx: int = 0,
        window: int = 15,
        show_all: bool = False,
    ) -> None:
        if run.n_prompts == 0:
            raise BadArgumentError(f"{run.run_dir} holds no prompts: dump some prompts first")
        if window < 0:
            raise BadArgumentError(f"--window must be 0 or more, got {window}")
        self.run = run
        self._cache: OrderedDict[tuple[int, int, int], np.ndarray] = OrderedDict()
        self.window = window
        self.show_all = show_all
        self.prompt_idx = run.prompt_index(prompt)
        self.layer_pos = run.layer_pos(run.layers[0] if layer is None else layer)
        self.neuron = 0
        self.goto_neuron(neuron)
        self.ctx_idx = 0
        self.goto_ctx(ctx_idx)

    # -- where we are ----------------------------------------------------------------------
    @property
    def layer(self) -> int:
        """The model layer id (runs may capture a subset of layers)."""
        return self.run.layers[self.layer_pos]

    @property
    def prompt(self) -> PromptRecord:
        return self.run.prompts[self.prompt_idx]

    @property
    def seq_len(self) -> int:
        return self.prompt.seq_len

    def values(self) -> np.ndarray:
        """``[seq]`` float32 activations of the current neuron on the current prompt."""
        key = (self.prompt_idx, self.layer, self.neuron)
        if key in self._cache:
            self._cache.move_to_end(key)
            return self._cache[key]
        v = self.run.prompt_neuron(self.prompt_idx, self.layer, self.neuron)
        self._cache[key] = v
        if len(self._cache) > _CACHE_SIZE:
            self._cache.popitem(last=False)
        return v

    def stats(self) -> NeuronStats:
        return neuron_stats(self.values())

    def window_range(self) -> tuple[int, int]:
        """Rows shown, ``[start, stop)``: ctx ± window, or every token in all-tokens mode."""
        if self.show_all:
            return 0, self.seq_len
        return max(0, self.ctx_idx - self.window), min(self.seq_len, self.ctx_idx + self.window + 1)

    # -- relative moves (clamped) ----------------------------------------------------------
    def move_layer(self, delta: int) -> None:
        self.layer_pos = int(np.clip(self.layer_pos + delta, 0, len(self.run.layers) - 1))

    def move_neuron(self, delta: int) -> None:
        self.neuron = int(np.clip(self.neuron + delta, 0, self.run.d_mlp - 1))

    def move_token(self, delta: int) -> None:
        self.ctx_idx = int(np.clip(self.ctx_idx + delta, 0, self.seq_len - 1))

    def move_prompt(self, delta: int) -> None:
        """Next/previous prompt; the cursor returns to token 0 (as the prototype)."""
        new = int(np.clip(self.prompt_idx + delta, 0, self.run.n_prompts - 1))
        if new != self.prompt_idx:
            self.prompt_idx = new
            self.ctx_idx = 0

    def toggle_all(self) -> None:
        self.show_all = not self.show_all

    # -- absolute jumps (validated) --------------------------------------------------------
    def goto_layer(self, layer: int) -> None:
        self.layer_pos = self.run.layer_pos(layer)

    def goto_neuron(self, neuron: int) -> None:
        if not 0 <= neuron < self.run.d_mlp:
            raise BadArgumentError(f"neuron {neuron} is out of range: use 0..{self.run.d_mlp - 1}")
        self.neuron = neuron

    def goto_ctx(self, ctx_idx: int) -> None:
        if not 0 <= ctx_idx < self.seq_len:
            raise BadArgumentError(
                f"ctx_idx {ctx_idx} is out of range: prompt {self.prompt.probe_id!r} has "
                f"tokens 0..{self.seq_len - 1}"
            )
        self.ctx_idx = ctx_idx

    def goto_prompt(self, key: str | int, ctx_idx: int = 0) -> None:
        """Show prompt ``key`` (id or index) with the cursor on ``ctx_idx`` (clamped)."""
        self.prompt_idx = self.run.prompt_index(key)
        self.ctx_idx = int(np.clip(ctx_idx, 0, self.seq_len - 1))

    def jump(
        self, layer: int, neuron: int, prompt: str | None = None, ctx_idx: int | None = None
    ) -> None:
        """Go to a neuron (a ranked row), and to its prompt and token when given.

        Everything is checked before anything changes, so a bad target leaves the view as it was.
        """
        layer_pos = self.run.layer_pos(layer)
        if not 0 <= neuron < self.run.d_mlp:
            raise BadArgumentError(
                f"neuron {neuron} is out of range: this run has 0..{self.run.d_mlp - 1}"
            )
        prompt_idx = self.prompt_idx if prompt is None else self.run.prompt_index(prompt)
        if prompt_idx != self.prompt_idx:
            self.prompt_idx, self.ctx_idx = prompt_idx, 0
        self.layer_pos, self.neuron = layer_pos, neuron
        if ctx_idx is not None:
            self.ctx_idx = int(np.clip(ctx_idx, 0, self.seq_len - 1))

    # -- parsing dialog input --------------------------------------------------------------
    def parse_layer(self, text: str) -> int:
        """A layer typed in the dialog: ``3`` or ``L3``."""
        text = text.strip()
        if text[:1] in ("L", "l") and text[1:].strip().isdigit():
            text = text[1:]
        value = parse_int(text, "layer", 0, self.run.n_layers - 1)
        self.run.layer_pos(value)  # raises for a layer the run did not capture
        return value

    def parse_neuron(self, text: str) -> NeuronId:
        """A neuron typed in the go-to dialog: ``42`` (in the current layer), ``L17/N1152``,
        ``17:1152`` or ``17/1152`` (any captured layer)."""
        if text.strip().lstrip("+-").isdigit():
            return NeuronId(self.layer, parse_int(text, "neuron", 0, self.run.d_mlp - 1))
        nid = parse_neuron(text, self.run.n_layers, self.run.d_mlp)
        self.run.layer_pos(nid.layer)  # raises for a layer the run did not capture
        return nid

    def goto(self, nid: NeuronId) -> None:
        """Show neuron ``nid`` (layer and index), on the same prompt and token."""
        self.jump(nid.layer, nid.index)

    def parse_ctx(self, text: str) -> int:
        return parse_int(text, "ctx_idx", 0, self.seq_len - 1)
