"""Token windows: tokenise each document once, chunk it, put one BOS in front, shuffle (seeded).

1. Each document is tokenised once without special tokens (a leading BOS the tokenizer or the
   text adds is dropped: the capture rule of :func:`neuron_signatures.capture.tokenize_prompts`).
2. Its tokens are cut into chunks of ``ctx_len - 1``; every window is ``[BOS] + chunk``, so
   windows never cross documents and the model always has its attention sink at position 0.
3. The windows are shuffled with ``numpy.random.default_rng(seed)`` and kept, in that order,
   until ``max_tokens`` corpus tokens (BOS excluded) are reached. The window index used
   everywhere in the atlas is the position in that shuffled order.

A streamed corpus (``hf:``) is read only until ``max_tokens`` tokens have been collected.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import BadArgumentError, BadPromptsError
from .corpus import CorpusSpec, Document, Fingerprint

TOKENIZE_GROUP = 256


@dataclass
class WindowPlan:
    """The atlas's windows, in processing-index order.

    Attributes:
        ctx_len: longest window in tokens, BOS included.
        tokens: ``[n_windows, ctx_len]`` int32 token ids, ``-1`` past each window's end.
        lengths: ``[n_windows]`` int32 tokens per window, BOS included.
        doc: ``[n_windows]`` int64 index of the window's document in corpus order.
        offset: ``[n_windows]`` int64 index, in the document's tokens, of the window's first
            non-BOS token.
        documents: metadata of every document read, in corpus order.
        fingerprint: sha256 of the reader options and every document read.
        n_corpus_tokens: tokens of every document read (BOS excluded), before ``max_tokens``.
        n_corpus_windows: windows of every document read, before ``max_tokens``.
    """

    ctx_len: int
    tokens: np.ndarray
    lengths: np.ndarray
    doc: np.ndarray
    offset: np.ndarray
    documents: list[dict[str, Any]]
    fingerprint: str
    n_corpus_tokens: int
    n_corpus_windows: int

    @property
    def n_windows(self) -> int:
        return int(self.lengths.shape[0])

    @property
    def n_tokens(self) -> int:
        """Tokens in the kept windows, BOS included."""
        return int(self.lengths.sum())


def tokenize_texts(tokenizer: Any, texts: list[str]) -> list[np.ndarray]:
    """Token ids per text, without special tokens and without a leading BOS."""
    bos = tokenizer.bos_token_id
    # no attention masks: a list per text that nothing reads (a quarter of the tokenising time)
    ids = tokenizer(
        texts, add_special_tokens=False, return_attention_mask=False, return_token_type_ids=False
    ).input_ids
    out = []
    for row in ids:
        start = 0
        while start < len(row) and row[start] == bos:
            start += 1
        out.append(np.asarray(row[start:], dtype=np.int64))
    return out


def _empty_fix(kind: str) -> str:
    """What to do about a corpus without text: ``--text_field`` only where rows have fields."""
    if kind in ("json", "jsonl", "parquet", "hf"):
        return "give a corpus with text, or the right --text_field"
    if kind == "txt":
        return "give a text file with one document per line (or blank-line separated: --paragraphs)"
    return "give a corpus with text"


def plan_windows(
    documents: Iterable[Document],
    spec: CorpusSpec,
    tokenizer: Any,
    *,
    ctx_len: int,
    seed: int,
    max_tokens: int | None,
) -> WindowPlan:
    """Tokenise, chunk, shuffle and cut the corpus into the atlas's windows (see module doc)."""
    bos = tokenizer.bos_token_id
    if bos is None:
        raise BadArgumentError("this tokenizer has no BOS token: the atlas needs one per window")
    if ctx_len < 2:
        raise BadArgumentError(f"--ctx_len must be at least 2 (BOS + one token), got {ctx_len}")
    fp = Fingerprint(spec)
    metas: list[dict[str, Any]] = []
    chunks: list[np.ndarray] = []
    win_doc: list[int] = []
    win_off: list[int] = []
    n_read = 0
    read_limit = max_tokens if spec.streamed else None
    group: list[Document] = []

    def flush() -> None:
        nonlocal n_read
        if not group:
            return
        for d, ids in zip(group, tokenize_texts(tokenizer, [g.text for g in group]), strict=True):
            i = len(metas)
            metas.append(d.meta)
            for off in range(0, len(ids), ctx_len - 1):
                chunks.append(ids[off : off + ctx_len - 1])
                win_doc.append(i)
                win_off.append(off)
            n_read += len(ids)
        group.clear()

    for doc in documents:
        fp.add(doc)
        group.append(doc)
        if len(group) >= TOKENIZE_GROUP:
            flush()
            if read_limit is not None and n_read >= read_limit:
                break
    flush()
    if not chunks:
        raise BadPromptsError(
            f"corpus {spec.describe()['source']} has no text (no document gives any token): "
            + _empty_fix(spec.kind)
        )
    order = np.random.default_rng(seed).permutation(len(chunks))
    sizes = np.array([len(chunks[i]) for i in order], dtype=np.int64)
    n_keep = len(order)
    if max_tokens is not None:
        n_keep = min(n_keep, int(np.searchsorted(np.cumsum(sizes), max_tokens)) + 1)
    keep = order[:n_keep]
    tokens = np.full((n_keep, ctx_len), -1, dtype=np.int32)
    tokens[:, 0] = bos
    lengths = np.empty(n_keep, dtype=np.int32)
    for row, i in enumerate(keep):
        c = chunks[i]
        tokens[row, 1 : 1 + len(c)] = c
        lengths[row] = 1 + len(c)
    return WindowPlan(
        ctx_len=ctx_len,
        tokens=tokens,
        lengths=lengths,
        doc=np.asarray(win_doc, dtype=np.int64)[keep],
        offset=np.asarray(win_off, dtype=np.int64)[keep],
        documents=metas,
        fingerprint=fp.hexdigest(),
        n_corpus_tokens=n_read,
        n_corpus_windows=len(chunks),
    )
