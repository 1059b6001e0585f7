"""Corpus readers: every format, the embedded fortunes, and one clear error per bad input."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from neuron_signatures.atlas.corpus import (
    CorpusSpec,
    Fingerprint,
    fortune_files,
    iter_documents,
    split_fortunes,
)
from neuron_signatures.errors import BadArgumentError, BadPromptsError


def texts(spec: CorpusSpec) -> list[str]:
    return [d.text for d in iter_documents(spec)]


def test_txt_lines_and_paragraphs(tmp_path: Path) -> None:
    p = tmp_path / "c.txt"
    p.write_text("one line\n\ntwo\nthree\r\n\n\nfour\nfive\n")
    assert texts(CorpusSpec(str(p))) == ["one line", "two", "three", "four", "five"]
    assert texts(CorpusSpec(str(p), paragraphs=True)) == ["one line", "two\nthree", "four\nfive"]


def test_jsonl_json_parquet(tmp_path: Path) -> None:
    rows = [{"body": "first doc", "id": 1}, {"body": "second", "id": 2}]
    jl = tmp_path / "c.jsonl"
    jl.write_text("\n".join(json.dumps(r) for r in rows) + "\n\n")
    assert texts(CorpusSpec(str(jl), text_field="body")) == ["first doc", "second"]
    js = tmp_path / "c.json"
    js.write_text(json.dumps([*rows, "a plain string"]))
    assert texts(CorpusSpec(str(js), text_field="body")) == [
        "first doc",
        "second",
        "a plain string",
    ]
    import pandas as pd

    pq = tmp_path / "c.parquet"
    pd.DataFrame(rows).to_parquet(pq)
    docs = list(iter_documents(CorpusSpec(str(pq), text_field="body")))
    assert [d.text for d in docs] == ["first doc", "second"]
    assert docs[1].meta == {"index": 1}


def test_fortune_default() -> None:
    files = fortune_files()
    assert len(files) >= 40 and "LICENSE" not in {f.name for f in files}
    docs = list(iter_documents(CorpusSpec()))
    assert len(docs) > 10_000
    topics = {d.meta["topic"] for d in docs}
    assert {"science", "politics", "work"} <= topics
    assert not any(d.text.strip() == "%" or not d.text.strip() for d in docs)
    assert split_fortunes("a\nb\n%\n\n%\nc\n%\n") == ["a\nb", "c"]


def test_fingerprint_changes_with_text_and_options(tmp_path: Path) -> None:
    p = tmp_path / "c.txt"
    p.write_text("a\nb\n")

    def fp(spec: CorpusSpec) -> str:
        f = Fingerprint(spec)
        for d in iter_documents(spec):
            f.add(d)
        return f.hexdigest()

    first = fp(CorpusSpec(str(p)))
    assert first == fp(CorpusSpec(str(p)))
    assert first != fp(CorpusSpec(str(p), paragraphs=True))
    p.write_text("a\nc\n")
    assert first != fp(CorpusSpec(str(p)))


@pytest.mark.parametrize(
    ("name", "content", "field", "match"),
    [
        ("missing.txt", None, "text", "does not exist"),
        ("c.csv", "x", "text", "unknown suffix"),
        ("c.jsonl", '{"body": "x"}\n', "text", "no field 'text'.*--text_field"),
        ("c.jsonl", '{"text": "x"}\nnot json\n', "text", "line 2 is not JSON"),
        ("c.json", '{"text": "x"}', "text", "JSON list"),
        ("c.json", '[{"text": 3}]', "text", "is int, not text"),
        ("c.parquet", "not parquet", "text", "not a readable Parquet"),
    ],
)
def test_bad_files(tmp_path: Path, name: str, content: str | None, field: str, match: str) -> None:
    p = tmp_path / name
    if content is not None:
        p.write_text(content)
    with pytest.raises(BadPromptsError, match=match):
        texts(CorpusSpec(str(p), text_field=field))


def test_parquet_missing_column(tmp_path: Path) -> None:
    import pandas as pd

    p = tmp_path / "c.parquet"
    pd.DataFrame({"body": ["x"]}).to_parquet(p)
    with pytest.raises(BadPromptsError, match=r"no column 'text' .*columns: body"):
        texts(CorpusSpec(str(p)))


def test_hf_offline_is_one_line_error() -> None:
    with pytest.raises(BadArgumentError, match="cannot open hf:nobody/no-such-dataset") as e:
        texts(CorpusSpec("hf:nobody/no-such-dataset:train"))
    assert "\n" not in str(e.value)


def test_hf_without_datasets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "datasets", None)
    with pytest.raises(BadArgumentError, match=r"pip install 'neuron-signatures\[hf\]'"):
        texts(CorpusSpec("hf:NeelNanda/pile-10k"))


@pytest.mark.parametrize("suffix", [".txt", ".jsonl", ".json"])
def test_invalid_utf8_is_refused_with_its_place(tmp_path: Path, suffix: str) -> None:
    """Bytes that are not UTF-8 are refused (not replaced by U+FFFD and built into an atlas),
    naming the file, the byte offset, the line and the column."""
    p = tmp_path / f"c{suffix}"
    lines = {
        ".txt": [b"first line", b"caf\xe9 au lait"],
        ".jsonl": [b'{"text": "ok"}', b'{"text": "caf\xe9"}'],
        ".json": [b'["ok",', b' "caf\xe9"]'],
    }[suffix]
    p.write_bytes(b"\n".join(lines) + b"\n")
    offset = len(lines[0]) + 1 + lines[1].index(b"\xe9")
    col = lines[1].index(b"\xe9") + 1
    with pytest.raises(BadPromptsError) as e:
        list(iter_documents(CorpusSpec(str(p))))
    msg = str(e.value)
    assert f"corpus {p} is not UTF-8 text: byte offset {offset} (line 2, column {col})" in msg
    assert "0xe9" in msg and "iconv" in msg


def test_random_bytes_are_refused(tmp_path: Path) -> None:
    import random

    p = tmp_path / "random.txt"
    p.write_bytes(bytes(random.Random(0).randrange(256) for _ in range(4096)))
    with pytest.raises(BadPromptsError, match="is not UTF-8 text"):
        list(iter_documents(CorpusSpec(str(p))))


def test_utf8_accents_read(tmp_path: Path) -> None:
    p = tmp_path / "ok.txt"
    p.write_bytes("café\nnaïve ✓\n".encode())
    assert texts(CorpusSpec(str(p))) == ["café", "naïve ✓"]
