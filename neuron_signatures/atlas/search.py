"""Search an atlas: which neurons peak on a token (no model), which fire on a text (one forward).

Token search:

1. Once per opened atlas, every layer's top examples are turned into the token they sit on,
   ``tokens[g // ctx_len, g % ctx_len]`` of the windows (:class:`TokenIndex`, ``[L, d, k]``).
2. The query becomes a set of vocabulary ids (:func:`match_token`); a neuron's count is how many
   of its top-k examples sit on one of them.
3. Neurons with a count are ranked by count, then their atlas max, then ``(layer, index)``.

Text search:

1. The text is tokenised as the atlas tokenises a window: without special tokens, one BOS in
   front (:func:`.windows.tokenize_texts`); it is not cut into ``ctx_len`` windows.
2. One forward captures ``hook_post`` of the atlas's layers
   (:func:`neuron_signatures.models.capture_hook_post`).
3. Per position the top-n neurons by value (or by value / the neuron's atlas max); overall, each
   neuron's max over the text, ranked the same way. BOS is skipped unless the atlas counted it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from ..errors import BadArgumentError, ModelLoadError, NeuronSignaturesError
from ..tokens import SPIECE_SPACE
from . import store

log = logging.getLogger(__name__)
RANK_BY = ("value", "frac_of_max")


@dataclass
class TokenHit:
    """A neuron whose top examples peak on the searched token.

    Attributes:
        count: how many of the neuron's top-k examples sit on the token.
        of: how many top examples the neuron has (``<= top_k``).
        max_value: the neuron's max activation over the atlas.
    """

    layer: int
    index: int
    count: int
    of: int
    max_value: float


@dataclass
class TokenSearch:
    """Neurons that peak on a token; ``hits`` ranked by count, max value, then (layer, index)."""

    query: str
    token_ids: list[int]
    hits: list[TokenHit]


@dataclass
class TextHit:
    """A neuron's activation on a text.

    Attributes:
        value: activation on the token (in ``overall``: the max over the text).
        position: the token's position in the text (in ``overall``: where that max is).
        frac_of_max: ``value`` / the neuron's atlas max (NaN when that max is ``<= 0``).
    """

    layer: int
    index: int
    value: float
    position: int
    frac_of_max: float


@dataclass
class TextSearch:
    """The neurons a text activates.

    Attributes:
        token_ids / tokens: the text's tokens, BOS first.
        per_token: top neurons per position (``[]`` for BOS unless the atlas counted BOS).
        overall: top neurons by their max over the text.
        rank_by: ``value`` or ``frac_of_max``.
    """

    text: str
    token_ids: list[int]
    tokens: list[str]
    per_token: list[list[TextHit]]
    overall: list[TextHit]
    rank_by: str


class SearchableAtlas(Protocol):
    """What a search reads of an atlas: an opened :class:`.reader.Atlas` (which offers these
    searches as methods, so this module names the reader's interface, not its class)."""

    root: Path
    layers: list[int]
    n_layers: int
    d_mlp: int
    model_name: str
    manifest: dict[str, Any]

    @property
    def vocab(self) -> list[str]: ...

    @property
    def token_index(self) -> TokenIndex: ...

    def token(self, token_id: int) -> str: ...


class TokenIndex:
    """Per atlas layer: the token of each top example and each neuron's atlas max.

    Attributes:
        layers: the atlas's layers (rows of the arrays).
        tokens: ``[L, d, k]`` int32 token id of each top example (-1 where a neuron has fewer).
        max: ``[L, d]`` float64 max activation over the atlas (the layer files' ``max``).
    """

    def __init__(self, atlas: SearchableAtlas) -> None:
        with store.open_numpy(atlas.root / store.WINDOWS) as f:
            flat = np.asarray(f.get_tensor("tokens"), dtype=np.int32).reshape(-1)
        tokens, maxes = [], []
        for layer in atlas.layers:
            with store.open_numpy(store.layer_file(atlas.root, layer)) as f:
                g = np.asarray(f.get_tensor("top_g"), dtype=np.int64)
                maxes.append(np.asarray(f.get_tensor("max"), dtype=np.float64))
            tokens.append(np.where(g >= 0, flat[np.maximum(g, 0)], -1))
        self.layers: list[int] = list(atlas.layers)
        self.tokens = np.stack(tokens)
        self.max = np.stack(maxes)
        self._vocab = atlas.vocab

    @cached_property
    def ids_of_piece(self) -> dict[str, list[int]]:
        out: dict[str, list[int]] = {}
        for i, piece in enumerate(self._vocab):
            out.setdefault(piece, []).append(i)
        return out

    def rows(self, layers: list[int] | None) -> np.ndarray:
        """Row indices of ``layers`` (all when ``None``); refuses layers not in the atlas."""
        if layers is None:
            return np.arange(len(self.layers))
        bad = sorted(set(layers) - set(self.layers))
        if bad or not layers:
            raise BadArgumentError(
                f"layers {bad or '(none)'} are not in the atlas: pick from {self.layers}"
            )
        return np.asarray(sorted(self.layers.index(layer) for layer in set(layers)))


def match_token(atlas: SearchableAtlas, token: str | int) -> list[int]:
    """The vocabulary ids a token query means.

    An ``int`` is a token id. A string matches, case-sensitively, the piece equal to it and the
    same word with and without SentencePiece's leading-space marker ``▁``; a leading space in
    the query reads as ``▁``. So ``"Austin"``, ``" Austin"`` and ``"▁Austin"`` each match both
    ``Austin`` and ``▁Austin`` (whichever the vocabulary has), and ``" "`` matches ``▁``.

    Raises:
        BadArgumentError: an id out of range, or a string no vocabulary piece matches.
    """
    n_vocab = len(atlas.vocab)
    if isinstance(token, int | np.integer) and not isinstance(token, bool):
        if not 0 <= int(token) < n_vocab:
            raise BadArgumentError(f"token id {token} is out of range: use 0..{n_vocab - 1}")
        return [int(token)]
    if not isinstance(token, str) or not token:
        raise BadArgumentError("the token to search is empty: give one, e.g. 'Austin'")
    word = token[1:] if token[0] in (" ", SPIECE_SPACE) else token
    pieces = {token, word, SPIECE_SPACE + word} - {""}
    by_piece = atlas.token_index.ids_of_piece
    ids = sorted(i for p in pieces for i in by_piece.get(p, []))
    if not ids:
        raise BadArgumentError(
            f"token {token!r} is not in the vocabulary of {atlas.model_name}: give one token "
            "as the tokenizer splits text (e.g. 'Austin'), or search a text with --search_text"
        )
    return ids


def search_token(
    atlas: SearchableAtlas, token: str | int, top_n: int = 50, layers: list[int] | None = None
) -> TokenSearch:
    """Neurons whose top examples peak on ``token`` (see :func:`match_token` for the rule)."""
    _check_top_n(top_n)
    ids = match_token(atlas, token)
    index = atlas.token_index
    rows = index.rows(layers)
    tokens = index.tokens[rows]  # [L', d, k]
    count = np.isin(tokens, ids).sum(-1)
    of = (tokens >= 0).sum(-1)
    mx = index.max[rows]
    r, n = np.nonzero(count)
    order = np.lexsort((n, r, -mx[r, n], -count[r, n]))[:top_n]
    hits = [
        TokenHit(
            layer=index.layers[rows[r[i]]],
            index=int(n[i]),
            count=int(count[r[i], n[i]]),
            of=int(of[r[i], n[i]]),
            max_value=float(mx[r[i], n[i]]),
        )
        for i in order
    ]
    return TokenSearch(query=str(token), token_ids=ids, hits=hits)


def load_atlas_model(
    atlas: SearchableAtlas, device: str | None = None, dtype: str | None = None
) -> Any:
    """The atlas's model (a :class:`~neuron_signatures.models.LoadedModel`), for text search.

    ``dtype`` defaults to the atlas's own, except that a bf16 atlas loads in fp32 on a CPU
    without native bf16 (emulated bf16 runs ~5x slower; values differ by bf16 rounding only).
    UIs load it once and pass it to :func:`search_text`.
    """
    from ..models import cpu_has_native_bf16, default_device, load_model

    device = device or default_device()
    if dtype is None:
        dtype = str(atlas.manifest["model"].get("dtype", "auto"))
        if dtype == "bf16" and device == "cpu" and not cpu_has_native_bf16():
            dtype = "fp32"
    try:
        return load_model(atlas.model_name, device, dtype)
    except NeuronSignaturesError as e:
        raise ModelLoadError(f"text search needs the atlas's model {atlas.model_name}: {e}") from e


def text_ids(tokenizer: Any, text: str) -> list[int]:
    """Token ids of ``text`` as the atlas tokenises a window: one BOS, then the text's tokens."""
    from .windows import tokenize_texts

    ids = [int(i) for i in tokenize_texts(tokenizer, [text])[0]]
    if not ids:
        raise BadArgumentError("the text to search is empty: give some text, e.g. 'Austin, Texas'")
    return [int(tokenizer.bos_token_id), *ids]


def search_text(
    atlas: SearchableAtlas,
    text: str,
    top_n: int = 10,
    lm: Any = None,
    rank_by: str = "value",
    layers: list[int] | None = None,
) -> TextSearch:
    """The neurons ``text`` activates most, per token and overall (see the module doc).

    Args:
        lm: the atlas's model; loaded with :func:`load_atlas_model` when ``None``.
        rank_by: ``value`` (activation) or ``frac_of_max`` (activation / the neuron's atlas max;
            neurons whose atlas max is ``<= 0`` are left out).
        layers: a subset of the atlas's layers (default all).
    """
    import torch

    _check_top_n(top_n)
    if rank_by not in RANK_BY:
        raise BadArgumentError(f"rank_by {rank_by!r} is unknown: use one of {', '.join(RANK_BY)}")
    if not text:
        raise BadArgumentError("the text to search is empty: give some text, e.g. 'Austin, Texas'")
    index = atlas.token_index
    rows = index.rows(layers)
    wanted = [index.layers[r] for r in rows]
    if lm is None:
        lm = load_atlas_model(atlas)
    _check_model(atlas, lm)
    ids = text_ids(lm.tokenizer, text)
    acts = _capture(lm, ids, wanted)  # [T, L' * d] on the model's device
    mx = _to_device(index.max[rows].reshape(-1), acts.device)
    start = 0 if atlas.manifest["params"].get("include_bos") else 1
    per_token: list[list[TextHit]] = [[] for _ in range(start)]
    overall: list[TextHit] = []
    if len(ids) > start:
        pos = torch.arange(start, len(ids), device=acts.device)
        per_token += _ranked(acts[start:], pos[:, None], mx, rank_by, top_n, wanted, atlas.d_mlp)
        best, at = acts[start:].max(0)
        overall = _ranked(best[None], pos[at][None], mx, rank_by, top_n, wanted, atlas.d_mlp)[0]
    return TextSearch(
        text=text,
        token_ids=ids,
        tokens=[atlas.token(i) for i in ids],
        per_token=per_token,
        overall=overall,
        rank_by=rank_by,
    )


def _check_top_n(top_n: int) -> None:
    if top_n < 1:
        raise BadArgumentError(f"top_n must be at least 1, got {top_n}")


def _check_model(atlas: SearchableAtlas, lm: Any) -> None:
    if lm.n_layers != atlas.n_layers or lm.d_mlp != atlas.d_mlp:
        raise BadArgumentError(
            f"model {lm.name} ({lm.n_layers} layers x {lm.d_mlp}) is not the atlas's "
            f"{atlas.model_name} ({atlas.n_layers} x {atlas.d_mlp}): pass the atlas's model"
        )
    if lm.name != atlas.model_name:
        log.warning("searching an atlas of %s with model %s", atlas.model_name, lm.name)


def _to_device(a: np.ndarray, device: Any) -> Any:
    import torch

    return torch.from_numpy(np.ascontiguousarray(a)).to(device)


def _capture(lm: Any, ids: list[int], layers: list[int]) -> Any:
    """``[T, len(layers) * d_mlp]`` float32 activations of one sequence (layers side by side)."""
    import torch

    from ..models import capture_hook_post

    x = torch.tensor([ids], dtype=torch.long, device=lm.device)
    got = capture_hook_post(lm, x, torch.ones_like(x), layers)
    return torch.cat([got[layer][0].float() for layer in layers], dim=1)


def _ranked(
    values: Any,
    positions: Any,
    maxes: Any,
    rank_by: str,
    top_n: int,
    layers: list[int],
    d_mlp: int,
) -> list[list[TextHit]]:
    """Per row of ``values [R, N]`` (a float32 tensor), the top-n neurons by ``rank_by``.

    ``positions``: ``[R, 1]`` or ``[R, N]`` position of each value; ``maxes``: ``[N]`` float64.
    Runs where the tensors are (torch's top-k: 20x numpy's argpartition on 240k neurons); only
    the ``[R, n]`` winners come back. Equal keys: the lower neuron id first.
    """
    import torch

    v = values.double()
    frac = torch.where(maxes > 0, v / maxes, torch.nan)
    key = (v if rank_by == "value" else frac).nan_to_num(nan=-torch.inf)
    n = min(top_n, key.shape[1])
    cand = key.topk(n, dim=1).indices
    pos = positions.expand_as(values)
    got = {
        name: torch.gather(t, 1, cand).cpu().numpy()
        for name, t in (("key", key), ("v", values), ("frac", frac), ("pos", pos))
    }
    cand = cand.cpu().numpy()
    out = []
    for r in range(cand.shape[0]):
        order = np.lexsort((cand[r], -got["key"][r]))
        out.append(
            [
                TextHit(
                    layer=layers[int(cand[r, j]) // d_mlp],
                    index=int(cand[r, j]) % d_mlp,
                    value=float(got["v"][r, j]),
                    position=int(got["pos"][r, j]),
                    frac_of_max=float(got["frac"][r, j]),
                )
                for j in order
                if got["key"][r, j] > -np.inf
            ]
        )
    return out
