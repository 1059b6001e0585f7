"""The response cache of the LLM client: answers by request key in one SQLite file, committed in
batches.

1. ``folder/responses.sqlite`` holds one row per answer: the key (sha256 of the request, see
   :func:`.client.cache_key`), the endpoint, the request body and the answer, as JSON text.
2. Answers are kept in memory and committed together: every :data:`COMMIT_EVERY` answers, when
   :data:`COMMIT_S` seconds passed since the last commit, and at :meth:`ResponseCache.flush` /
   :meth:`ResponseCache.close`. One transaction is one fsync (WAL, ``synchronous=FULL``), so a
   committed answer survives a crash or ``kill -9``; one still in memory is asked again by
   ``--resume``. An fsync'd file per answer (the older layout) cost ~14 ms per answer on the
   2-core dev machine and held the run well under the server's rate
   (``benchmarks/bench_explain_llm.py``).
3. The older layout, one ``<key[:2]>/<key>.json`` file per answer, is still read, so a run
   made before resumes without a request.

Thread-safe (one lock around the connection); several processes may share the folder (SQLite's
own locks, a 60 s busy timeout).
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

CACHE_DB = "responses.sqlite"
COMMIT_EVERY = 64  # answers per commit (one fsync)
COMMIT_S = 1.0  # at most this long between an answer and its commit


class ResponseCache:
    """Answers by cache key in ``folder/responses.sqlite`` (WAL, ``synchronous=FULL``), written
    in batches; thread-safe, and several processes may share the folder (SQLite's locks).

    The cache of older versions, one ``<key[:2]>/<key>.json`` file per answer, is still read
    (:meth:`get` falls back to it), so an older run's folder resumes without a request.
    """

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(
            folder / CACHE_DB, timeout=60, check_same_thread=False, isolation_level=None
        )
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS responses (key TEXT PRIMARY KEY, endpoint TEXT NOT NULL,"
            " body TEXT NOT NULL, response TEXT NOT NULL)"
        )
        self._pending: dict[str, tuple[str, str, str]] = {}
        self._since = time.monotonic()

    def get(self, key: str) -> dict[str, Any] | None:
        """The cached answer of ``key`` (None: not cached, or an unreadable legacy file)."""
        with self._lock:
            row = self._pending.get(key)
            text = row[2] if row else None
            if text is None:
                got = self._db.execute(
                    "SELECT response FROM responses WHERE key = ?", (key,)
                ).fetchone()
                text = got[0] if got else None
        if text is not None:
            return dict(json.loads(text))
        legacy = self.folder / key[:2] / f"{key}.json"
        if legacy.is_file():
            try:
                return dict(json.loads(legacy.read_bytes())["response"])
            except (ValueError, KeyError, TypeError):
                log.warning("ignoring an unreadable cache file %s", legacy)
        return None

    def put(self, key: str, endpoint: str, body: dict[str, Any], response: dict[str, Any]) -> None:
        """Keep ``response``; committed with the next batch (module doc, step 4)."""
        row = (endpoint, json.dumps(body, sort_keys=True), json.dumps(response, sort_keys=True))
        with self._lock:
            self._pending[key] = row
            due = len(self._pending) >= COMMIT_EVERY or time.monotonic() - self._since > COMMIT_S
        if due:
            self.flush()

    def flush(self) -> None:
        """Commit the pending answers (one transaction, one fsync)."""
        with self._lock:
            if self._pending:
                rows = [(k, *v) for k, v in self._pending.items()]
                self._db.execute("BEGIN IMMEDIATE")
                try:
                    self._db.executemany(
                        "INSERT OR REPLACE INTO responses VALUES (?, ?, ?, ?)", rows
                    )
                except BaseException:
                    self._db.execute("ROLLBACK")
                    raise
                self._db.execute("COMMIT")
                self._pending.clear()
            self._since = time.monotonic()

    def entries(self) -> list[tuple[str, dict[str, Any]]]:
        """Every committed ``(endpoint, body)``, oldest first (the benchmark replays them)."""
        with self._lock:
            rows = self._db.execute(
                "SELECT endpoint, body FROM responses ORDER BY rowid"
            ).fetchall()
        return [(e, json.loads(b)) for e, b in rows]

    def close(self) -> None:
        self.flush()
        with self._lock:
            self._db.close()
