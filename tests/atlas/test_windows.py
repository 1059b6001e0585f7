"""Windows: one BOS each, chunks of ctx_len - 1 inside one document, seeded shuffle, max_tokens."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from neuron_signatures.atlas.corpus import CorpusSpec, Document
from neuron_signatures.atlas.windows import plan_windows, tokenize_texts
from neuron_signatures.errors import BadPromptsError

DOCS = [
    "The capital of Texas is Austin",
    "",
    "<bos> hello world",
    "a " * 25,
    "foo bar",
]


def plan(tok: Any, **kw: Any) -> Any:
    args = {"ctx_len": 8, "seed": 0, "max_tokens": None, **kw}
    return plan_windows([Document(t) for t in DOCS], CorpusSpec("x.txt"), tok, **args)


def test_windows_cover_each_document_once(tiny_tokenizer: Any) -> None:
    p = plan(tiny_tokenizer)
    ids = tokenize_texts(tiny_tokenizer, DOCS)
    assert [len(i) for i in ids] == [6, 0, 2, 25, 2]  # leading BOS text dropped, one BOS per window
    bos = tiny_tokenizer.bos_token_id
    assert (p.tokens[:, 0] == bos).all()
    rebuilt: dict[int, list[int]] = {}
    for w in np.argsort(p.doc * 1000 + p.offset, kind="stable"):
        n = int(p.lengths[w])
        assert 2 <= n <= 8 and (p.tokens[w, n:] == -1).all()
        assert int(p.offset[w]) == len(rebuilt.get(int(p.doc[w]), []))
        rebuilt.setdefault(int(p.doc[w]), []).extend(p.tokens[w, 1:n].tolist())
    assert rebuilt == {i: x.tolist() for i, x in enumerate(ids) if len(x)}
    assert p.n_corpus_tokens == 35 and p.n_windows == 1 + 1 + 4 + 1
    assert len(p.documents) == len(DOCS)


def test_shuffle_is_seeded(tiny_tokenizer: Any) -> None:
    a, b, c = plan(tiny_tokenizer), plan(tiny_tokenizer), plan(tiny_tokenizer, seed=1)
    assert np.array_equal(a.tokens, b.tokens) and a.fingerprint == b.fingerprint
    assert not np.array_equal(a.doc, c.doc)
    assert sorted(a.doc.tolist()) == sorted(c.doc.tolist())


def test_max_tokens_keeps_a_prefix_of_the_shuffle(tiny_tokenizer: Any) -> None:
    full = plan(tiny_tokenizer)
    cut = plan(tiny_tokenizer, max_tokens=10)
    n = cut.n_windows
    assert np.array_equal(cut.tokens, full.tokens[:n])
    kept = int((cut.lengths - 1).sum())
    assert kept >= 10 and kept - int(cut.lengths[-1] - 1) < 10


def test_empty_corpus(tiny_tokenizer: Any, tmp_path: Path) -> None:
    with pytest.raises(BadPromptsError, match="has no text"):
        plan_windows(
            [Document(""), Document(" ")],
            CorpusSpec("x.txt"),
            tiny_tokenizer,
            ctx_len=8,
            seed=0,
            max_tokens=None,
        )
