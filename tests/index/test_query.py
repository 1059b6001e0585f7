"""Queries on a hand-made table: FTS escaping, filters and sorts against a Python reference."""

from __future__ import annotations

import re
from typing import Any

import pytest

from neuron_signatures.errors import BadArgumentError
from neuron_signatures.index import IndexQuery, fts_query, query_index
from tests.index.conftest import HAND

NASTY = [
    '"',
    '""',
    '"Austin',
    "*",
    "Aus*",
    "AND",
    "a AND (b OR",
    "-",
    "-Texas",
    "(",
    ")",
    "NOT x",
    "NEAR(a b)",
    "explanation:capital",
    "^capital",
    "{a b}",
    "+",
    "'",
    ";DROP TABLE neurons;",
    "city of ▁",
    "",
    "   ",
    "\x00",
    "é ü 中文",
]


def ids(res: Any) -> list[tuple[int, int, str | None]]:
    return [(r.layer, r.neuron, r.side) for r in res.rows]


def ref(pred: Any, key: Any = None, limit: int = 50) -> list[tuple[int, int, str | None]]:
    """Rows of :data:`HAND` matching ``pred``, sorted by ``key`` (else layer, neuron, side)."""
    rows = [h for h in HAND if pred(h)]
    rows.sort(key=key or (lambda h: (h[0], h[1], h[2] or "")))
    return [(h[0], h[1], h[2]) for h in rows][:limit]


def words_in(h: tuple[Any, ...], *words: str) -> bool:
    toks = {w.lower() for w in re.findall(r"\w+", h[3] or "")}
    return all(w.lower() in toks for w in words)


@pytest.mark.parametrize("text", NASTY)
def test_fts_syntax_never_raises(hand_index: Any, text: str) -> None:
    """User text with FTS5 syntax runs as plain words: the rows whose explanation holds every
    word of it (none when it has no word), never an error."""
    words = re.findall(r"\w+", text)
    got = query_index(hand_index, IndexQuery(text=text, sort="layer"))
    assert ids(got) == ref(lambda h: bool(words) and words_in(h, *words))


def test_quotes_and_operators_are_words(hand_index: Any) -> None:
    assert fts_query('say "hi" AND (x*)') == '"say" "hi" "AND" "x"'
    assert fts_query("*-()") is None
    # "AND" is searched as the word, not the operator
    assert ids(query_index(hand_index, IndexQuery(text="AND"))) == [(1, 1, "negative")]
    # quoting in user text does not make a phrase: both words anywhere
    got = ids(query_index(hand_index, IndexQuery(text='"city capital"', sort="layer")))
    assert got == ref(lambda h: words_in(h, "city", "capital"))
    assert got == [(0, 1, "positive"), (1, 0, "positive"), (2, 1, "positive")]


def test_text_is_case_insensitive_and_relevance_ranks(hand_index: Any) -> None:
    res = query_index(hand_index, IndexQuery(text="austin"))
    assert ids(res) == [(0, 0, "positive")]
    assert res.rows[0].id == "L0/N0" and res.rows[0].score == pytest.approx(0.95)


@pytest.mark.parametrize(
    ("q", "pred", "key"),
    [
        (
            IndexQuery(sort="score"),
            lambda h: True,
            lambda h: (h[4] is None, -(h[4] or 0), h[0], h[1]),
        ),
        (IndexQuery(min_score=0.4, sort="score"), lambda h: (h[4] or -1) >= 0.4, lambda h: -h[4]),
        (
            IndexQuery(layers=[1, 2], sort="max"),
            lambda h: h[0] in (1, 2),
            lambda h: (-h[7], h[0], h[1]),
        ),
        (
            IndexQuery(min_density=0.05, max_density=0.5, sort="density"),
            lambda h: 0.05 <= h[6] <= 0.5,
            lambda h: (-h[6], h[0], h[1]),
        ),
        (IndexQuery(side="negative", sort="layer"), lambda h: h[2] == "negative", None),
        (
            IndexQuery(text="capital", min_score=0.5, layers=[0, 2], sort="score"),
            lambda h: words_in(h, "capital") and (h[4] or -1) >= 0.5 and h[0] in (0, 2),
            lambda h: -h[4],
        ),
    ],
)
def test_filters_and_sorts_match_reference(
    hand_index: Any, q: IndexQuery, pred: Any, key: Any
) -> None:
    assert ids(query_index(hand_index, q)) == ref(pred, key)


def test_limit(hand_index: Any) -> None:
    res = query_index(hand_index, IndexQuery(sort="score", limit=2))
    assert ids(res) == [(0, 0, "positive"), (2, 1, "positive")]


@pytest.mark.parametrize(
    ("q", "words"),
    [
        (IndexQuery(sort="bogus"), "--sort 'bogus' is not one of"),
        (IndexQuery(layers=[7]), "layer 7 is not in atlas"),
        (IndexQuery(side="both"), "--side"),
        (IndexQuery(limit=0), "--limit"),
        (IndexQuery(sort="relevance"), "needs a text query"),
    ],
)
def test_bad_queries_name_the_fix(hand_index: Any, q: IndexQuery, words: str) -> None:
    with pytest.raises(BadArgumentError, match=re.escape(words)):
        query_index(hand_index, q)


def test_default_sorts(hand_index: Any) -> None:
    by_score = ids(query_index(hand_index, IndexQuery(text="capital")))
    assert by_score == [(2, 1, "positive"), (0, 1, "positive"), (1, 0, "positive")]
    by_layer = ids(query_index(hand_index, IndexQuery(limit=3)))
    assert by_layer == [(0, 0, "negative"), (0, 0, "positive"), (0, 1, "positive")]
    relevance = query_index(hand_index, IndexQuery(text="capital", sort="relevance"))
    assert sorted(ids(relevance)) == sorted(by_score)
