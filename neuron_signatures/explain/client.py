"""One client for OpenAI-compatible servers (vLLM, llama.cpp's server, Ollama, OpenAI): chat and
completions with timeouts, bounded retries, a concurrency limit and a disk cache of responses.

The method, per request:

1. The request body is JSON (``model`` + messages or prompt + parameters). Its cache key is the
   sha256 of ``(base_url, model, endpoint, body)`` serialised with sorted keys; the API key travels
   only in the ``Authorization`` header, so it is in neither the key nor the cached file.
2. A cached answer is returned without touching the network (a hit); so is the answer to the same
   request on its way for another thread, waited for (a hit: identical questions asked at once,
   as two neurons with the same explanation scored on the same held-out text ask, go out once);
   otherwise (a miss) the body is POSTed under a semaphore of ``concurrency`` permits, with
   ``timeout_s`` on every call.
3. 429, 5xx, a refused connection and a timeout are retried up to ``max_retries`` times; the wait
   is ``Retry-After`` when the server sends one (up to ``max_retry_after_s``), else
   ``backoff_s * 2**attempt`` times a jitter in [0.5, 1.5), capped at ``max_backoff_s``. Other 4xx
   and answers that are not the protocol's JSON raise at once: retrying cannot fix them.
4. A good answer goes to the response cache (:mod:`.response_cache`: one SQLite file in
   ``cache_dir``, answers committed in batches), so a rerun or a resumed run sends nothing
   twice; hits and misses are counted in :attr:`OpenAIClient.stats`.

Concurrency is a thread pool (:meth:`OpenAIClient.chat_many`) plus the semaphore: the package is
synchronous end to end (CLI, Ray tasks, the explain run), ``httpx.Client`` is thread-safe and
pools connections, and blocking on network I/O releases the GIL, so threads give the overlap an
event loop would without making every caller async.
"""

from __future__ import annotations

import email.utils
import hashlib
import json
import logging
import os
import random
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx

from ..errors import BadArgumentError, NeuronSignaturesError
from .response_cache import ResponseCache

log = logging.getLogger(__name__)

CHAT = "chat/completions"
COMPLETIONS = "completions"
RETRY_STATUS = frozenset({429, 500, 502, 503, 504})


class LLMServerError(NeuronSignaturesError):
    """The LLM server could not be reached, refused the request or answered garbage.

    Attributes:
        status: the HTTP status of the last answer, None when there was none.
    """

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class ServerGoneError(LLMServerError):
    """A request not sent because the requests before it found the server gone."""


def is_gone(exc: LLMServerError) -> bool:
    """The error says the server is away (unreachable, or 429/5xx after every retry), not that
    it refused this one request."""
    return exc.status is None or exc.status in RETRY_STATUS


class MissingAPIKeyError(BadArgumentError):
    """The environment variable named for the API key is unset or empty."""


@dataclass
class ClientStats:
    """Counts of one client's requests: cache hits and misses, HTTP sends and retries."""

    hits: int = 0
    misses: int = 0
    sent: int = 0
    retries: int = 0

    def as_dict(self) -> dict[str, float]:
        """The counts and the hit rate, for a run's record."""
        return {**asdict(self), "hit_rate": self.hit_rate}

    @property
    def hit_rate(self) -> float:
        """Share of requests answered from the cache (0 when none was made)."""
        total = self.hits + self.misses
        return self.hits / total if total else 0.0


@dataclass
class _Flight:
    """A request on its way to the server; threads asking the same question wait for it."""

    done: threading.Event = field(default_factory=threading.Event)
    data: dict[str, Any] | None = None


@dataclass
class Capabilities:
    """What the server offers, found by one probe request (:meth:`OpenAIClient.probe`).

    Attributes:
        logprobs: chat answers carry per-token ``logprobs``.
        top_logprobs: those logprobs list alternatives (``top_logprobs``), enough for the
            simulator's expected value over 0-10; else the simulator parses a JSON answer.
    """

    logprobs: bool
    top_logprobs: bool


@dataclass
class ChatResult:
    """One chat answer: the text of each choice and, when asked for, each token's alternatives.

    Attributes:
        texts: ``choices[i].message.content``, one per choice (``n`` of them).
        top_logprobs: per choice, per generated token, ``{token: logprob}`` of the alternatives;
            ``None`` when the server sent no logprobs.
        cached: the answer came from the disk cache.
    """

    texts: list[str]
    top_logprobs: list[list[dict[str, float]]] | None = None
    cached: bool = False


@dataclass
class CompletionResult:
    """One completions answer with ``echo``: the prompt's tokens and their logprobs.

    Attributes:
        text: the returned text (the prompt itself when echoed, plus any generated tokens).
        tokens: the tokens the server scored, in order.
        token_logprobs: the logprob of each token given the ones before (``None`` for the first).
        top_logprobs: per token, ``{token: logprob}`` of the alternatives (empty when not sent).
        cached: the answer came from the disk cache.
        text_offset: each token's character offset in ``text`` (empty when the server sent
            none; then the tokens' lengths give them).
    """

    text: str
    tokens: list[str] = field(default_factory=list)
    token_logprobs: list[float | None] = field(default_factory=list)
    top_logprobs: list[dict[str, float]] = field(default_factory=list)
    cached: bool = False
    text_offset: list[int] = field(default_factory=list)


def cache_key(base_url: str, model: str, endpoint: str, body: dict[str, Any]) -> str:
    """sha256 hex of the request's identity; ``body`` must hold no secret (the key is a header)."""
    ident = {"base_url": base_url, "model": model, "endpoint": endpoint, "body": body}
    return hashlib.sha256(json.dumps(ident, sort_keys=True).encode()).hexdigest()


def retry_after_s(value: str | None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or an HTTP date), or None."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def read_api_key(env_name: str | None) -> str | None:
    """The API key held by the environment variable named ``env_name`` (None: no key sent)."""
    if env_name is None:
        return None
    key = os.environ.get(env_name, "")
    if not key:
        raise MissingAPIKeyError(
            f"the API key variable {env_name} is unset or empty: export {env_name}=<your key>, "
            "or leave --api_key_env out for a local server that needs none"
        )
    return key


class OpenAIClient:
    """A client of one OpenAI-compatible server and model (see the module docstring).

    Args:
        base_url: the server's API root, e.g. ``http://127.0.0.1:8080/v1``.
        model: the ``model`` field sent with every request.
        api_key_env: NAME of the environment variable holding the API key; None sends no key.
        cache_dir: folder of cached responses; None disables the cache.
        concurrency: most requests in flight at once, across threads.
        timeout_s: connect/read/write/pool timeout of every call.
        max_retries: retries after the first try on 429, 5xx and connection errors.
        backoff_s: first wait of the exponential backoff.
        max_backoff_s: cap of the exponential backoff.
        max_retry_after_s: cap of a server's ``Retry-After`` (honoured up to this many seconds).
        sleep: the wait function (tests pass a recorder).
        seed: seed of the jitter's generator.
    """

    def __init__(
        self,
        base_url: str,
        model: str,
        *,
        api_key_env: str | None = None,
        cache_dir: str | Path | None = None,
        concurrency: int = 4,
        timeout_s: float = 60.0,
        max_retries: int = 4,
        backoff_s: float = 0.5,
        max_backoff_s: float = 30.0,
        max_retry_after_s: float = 120.0,
        sleep: Callable[[float], None] = time.sleep,
        seed: int | None = None,
    ) -> None:
        if not base_url.startswith(("http://", "https://")):
            raise BadArgumentError(
                f"--base_url {base_url!r} is not an http(s) URL: pass e.g. http://127.0.0.1:8080/v1"
            )
        if concurrency < 1:
            raise BadArgumentError(f"--concurrency must be ≥ 1, got {concurrency}")
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.cache_dir = Path(cache_dir) if cache_dir is not None else None
        self.cache = ResponseCache(self.cache_dir) if self.cache_dir is not None else None
        self.concurrency = concurrency
        self.max_retries = max_retries
        self.backoff_s, self.max_backoff_s = backoff_s, max_backoff_s
        self.max_retry_after_s = max_retry_after_s
        self.stats = ClientStats()
        self._sleep = sleep
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self._slots = threading.BoundedSemaphore(concurrency)
        self._flights: dict[str, _Flight] = {}  # cache key -> the request on its way
        key = read_api_key(api_key_env)
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        self._http = httpx.Client(
            headers=headers,
            timeout=httpx.Timeout(timeout_s),
            limits=httpx.Limits(max_connections=concurrency),
        )

    def __enter__(self) -> OpenAIClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"OpenAIClient(base_url={self.base_url!r}, model={self.model!r})"

    def close(self) -> None:
        """Commit the cache and close it and the connection pool."""
        self._http.close()
        if self.cache is not None:
            self.cache.close()

    def flush(self) -> None:
        """Commit the answers received so far to the cache (a run calls it per batch)."""
        if self.cache is not None:
            self.cache.flush()

    def chat(self, messages: Sequence[dict[str, str]], **params: Any) -> ChatResult:
        """POST ``/chat/completions`` with ``messages`` and ``params`` (temperature, n, ...)."""
        body = {"model": self.model, "messages": list(messages), **params}
        data, cached = self.request(CHAT, body, lambda d: parse_chat(d, self.base_url))
        return parse_chat(data, self.base_url, cached)

    def completion(self, prompt: str, **params: Any) -> CompletionResult:
        """POST ``/completions``; ``echo=True, logprobs=k, max_tokens=1`` gives prompt logprobs."""
        body = {"model": self.model, "prompt": prompt, **params}
        data, cached = self.request(COMPLETIONS, body, lambda d: parse_completion(d, self.base_url))
        return parse_completion(data, self.base_url, cached)

    def chat_many(
        self, requests: Sequence[tuple[Sequence[dict[str, str]], dict[str, Any]]]
    ) -> list[ChatResult | LLMServerError]:
        """Run ``(messages, params)`` requests on ``concurrency`` threads, answers in order.

        A request that fails gives its :class:`LLMServerError` in its place, so one bad neuron
        does not stop the others.
        """

        def one(
            req: tuple[Sequence[dict[str, str]], dict[str, Any]],
        ) -> ChatResult | LLMServerError:
            try:
                return self.chat(req[0], **req[1])
            except LLMServerError as exc:
                return exc

        with ThreadPoolExecutor(max_workers=self.concurrency) as pool:
            return list(pool.map(one, requests))

    def send_many(
        self,
        requests: Sequence[tuple[Sequence[dict[str, str]] | str, dict[str, Any]]],
        stop_after: int | None = None,
    ) -> list[ChatResult | CompletionResult | LLMServerError]:
        """Like :meth:`chat_many` for a mix of chat requests (messages) and completions
        requests (a prompt string), answers in order, errors in place.

        With ``stop_after``, once that many requests in a row found the server gone
        (unreachable, or 429/5xx after every retry), the requests not yet started are not sent:
        each gets a :class:`ServerGoneError` in its place. All requests are queued at once
        (no barrier between batches), so the server stays busy to the last request.
        """
        gone = [0]

        def one(
            req: tuple[Sequence[dict[str, str]] | str, dict[str, Any]],
        ) -> ChatResult | CompletionResult | LLMServerError:
            if stop_after is not None and gone[0] >= stop_after:
                return ServerGoneError(
                    f"not sent: {gone[0]} requests in a row found LLM server {self.base_url} "
                    "gone; rerun with --resume once the server is back"
                )
            try:
                res: ChatResult | CompletionResult
                if isinstance(req[0], str):
                    res = self.completion(req[0], **req[1])
                else:
                    res = self.chat(req[0], **req[1])
            except LLMServerError as exc:
                with self._lock:
                    gone[0] = gone[0] + 1 if is_gone(exc) else 0
                return exc
            with self._lock:
                gone[0] = 0
            return res

        with ThreadPoolExecutor(max_workers=self.concurrency) as pool:
            return list(pool.map(one, requests))

    def probe_echo(self) -> bool:
        """Whether ``/completions`` echoes a prompt with its tokens' ``top_logprobs`` (OpenAI's
        all-at-once simulator needs it: ``echo=True, logprobs=5, max_tokens=1``; not 0, which
        llama-cpp-python reads as *no limit* and then generates up to its context size).

        Any HTTP answer that refuses, or an answer without the echoed tokens, their offsets
        adding up to the prompt and alternatives, is a no (tried once, no retries): the chat
        simulator is used instead. An unreachable server raises. The outcome is cached like an
        answer, so a rerun sends nothing.
        """
        prompt = "Zürich, naïve café:\t1\t2\t3"  # not ASCII: offsets must be characters
        body: dict[str, Any] = {"model": self.model, "prompt": prompt}
        body.update(echo=True, logprobs=5, max_tokens=1, temperature=0)
        key = cache_key(self.base_url, self.model, "probe:" + COMPLETIONS, body)
        found = self.cache.get(key) if self.cache is not None else None
        if found is not None and "echo" in found:
            self._count(hits=1)
            return bool(found["echo"])
        self._count(misses=1)
        try:
            res = parse_completion(self._send(COMPLETIONS, body, max_retries=0), self.base_url)
        except LLMServerError as exc:
            if exc.status is None and "unreachable" in str(exc):
                raise
            echo = False
        else:
            echo = (
                res.text.startswith(prompt)
                and bool(res.tokens)
                and len(res.top_logprobs) == len(res.tokens)
                and token_offsets(res) is not None
                and any(len(t) > 1 for t in res.top_logprobs)
            )
        if self.cache is not None:  # the outcome is kept, so a rerun asks nothing
            self.cache.put(key, "probe:" + COMPLETIONS, body, {"echo": echo})
        return echo

    def probe(self) -> Capabilities:
        """Ask once for one token with ``logprobs`` and ``top_logprobs``; see what comes back.

        A server that rejects the parameters (HTTP 400 or 422) offers neither; any other failure
        (unreachable, a wrong key, a wrong model) raises, so it is found before any neuron is sent.
        """
        msgs = [{"role": "user", "content": "Say 0."}]
        try:
            res = self.chat(msgs, max_tokens=1, temperature=0, logprobs=True, top_logprobs=5)
        except LLMServerError as exc:
            if exc.status not in (400, 422):
                raise
            return Capabilities(logprobs=False, top_logprobs=False)
        tops = res.top_logprobs
        has_lp = tops is not None and any(len(c) for c in tops)
        has_top = bool(tops) and any(len(t) > 1 for c in tops or [] for t in c)
        return Capabilities(logprobs=has_lp, top_logprobs=has_top)

    def request(
        self,
        endpoint: str,
        body: dict[str, Any],
        check: Callable[[dict[str, Any]], object] | None = None,
    ) -> tuple[dict[str, Any], bool]:
        """The JSON answer to ``body`` at ``endpoint`` and whether it came without a send of its
        own: from the cache, or from the same request another thread was sending meanwhile.

        ``check`` (a parser that raises :class:`LLMServerError` on garbage) runs before an answer
        is cached, so a malformed answer is never replayed.
        """
        key = cache_key(self.base_url, self.model, endpoint, body)
        while True:  # one thread at a time per question: the others wait for its answer
            with self._lock:
                flight = self._flights.get(key)
                if flight is None:
                    flight = self._flights[key] = _Flight()
                    break
            flight.done.wait()
            if flight.data is not None:
                self._count(hits=1)
                return flight.data, True
            # the thread that asked failed (its error is its caller's): ask again
        try:
            found = self.cache.get(key) if self.cache is not None else None
            if found is not None:
                self._count(hits=1)
                flight.data = found
                return found, True
            self._count(misses=1)
            data = self._send(endpoint, body)
            if check is not None:
                check(data)
            if self.cache is not None:
                self.cache.put(key, endpoint, body, data)
            flight.data = data
            return data, False
        finally:
            with self._lock:
                del self._flights[key]
            flight.done.set()

    def _count(self, **deltas: int) -> None:
        with self._lock:
            for name, d in deltas.items():
                setattr(self.stats, name, getattr(self.stats, name) + d)

    def _wait_s(self, attempt: int, retry_after: float | None) -> float:
        if retry_after is not None:
            return min(retry_after, self.max_retry_after_s)
        with self._lock:
            jitter = 0.5 + self._rng.random()
        return min(self.backoff_s * 2**attempt * jitter, self.max_backoff_s)

    def _send(
        self, endpoint: str, body: dict[str, Any], max_retries: int | None = None
    ) -> dict[str, Any]:
        url = f"{self.base_url}/{endpoint}"
        retries = self.max_retries if max_retries is None else max_retries
        for attempt in range(retries + 1):
            last = attempt == retries
            try:
                with self._slots:
                    self._count(sent=1)
                    resp = self._http.post(url, json=body)
            except httpx.TransportError as exc:
                problem = f"{type(exc).__name__} ({exc})"
                if last:
                    raise LLMServerError(
                        f"LLM server {self.base_url} unreachable after {attempt + 1} tries: "
                        f"{problem}; start it or fix --base_url"
                    ) from None
                wait = self._wait_s(attempt, None)
            else:
                if resp.status_code < 400:
                    return _json(resp, self.base_url, endpoint)
                if resp.status_code not in RETRY_STATUS or last:
                    raise LLMServerError(
                        f"LLM server {self.base_url} answered HTTP {resp.status_code} on "
                        f"/{endpoint} ({_snippet(resp.text)}) after {attempt + 1} tries; "
                        f"{_fix(resp.status_code)}",
                        status=resp.status_code,
                    )
                problem = f"HTTP {resp.status_code}"
                wait = self._wait_s(attempt, retry_after_s(resp.headers.get("Retry-After")))
            self._count(retries=1)
            log.info(
                "LLM server %s: %s, retry %d in %.2f s", self.base_url, problem, attempt + 1, wait
            )
            self._sleep(wait)
        raise AssertionError("unreachable")


def _snippet(text: str, n: int = 200) -> str:
    text = " ".join(text.split())
    return text[:n] + ("…" if len(text) > n else "")


def _fix(status: int) -> str:
    if status in (401, 403):
        return "check the key in the variable named by --api_key_env"
    if status == 404:
        return "check --base_url (it should end in /v1) and --model"
    if status in RETRY_STATUS:
        return "the server is overloaded or failing: lower --concurrency or retry later"
    return "check --model and the request parameters the server accepts"


def _json(resp: httpx.Response, base_url: str, endpoint: str) -> dict[str, Any]:
    try:
        data = resp.json()
    except ValueError:
        data = None
    if (
        not isinstance(data, dict)
        or not isinstance(data.get("choices"), list)
        or not data["choices"]
    ):
        raise LLMServerError(
            f"LLM server {base_url} answered /{endpoint} with something that is not an "
            f"OpenAI-style JSON object with choices ({_snippet(resp.text)}); check that --base_url "
            "points at an OpenAI-compatible API"
        )
    return data


def _garbage(base_url: str, what: str) -> LLMServerError:
    return LLMServerError(
        f"LLM server {base_url} sent a malformed answer ({what}); check that it speaks the "
        "OpenAI protocol"
    )


def parse_chat(data: dict[str, Any], base_url: str, cached: bool = False) -> ChatResult:
    """Read a ``/chat/completions`` answer into a :class:`ChatResult`."""
    texts: list[str] = []
    tops: list[list[dict[str, float]]] = []
    any_lp = False
    try:
        for choice in data["choices"]:
            content = choice["message"]["content"]
            texts.append(content if isinstance(content, str) else "")
            lp = (choice.get("logprobs") or {}).get("content")
            any_lp = any_lp or bool(lp)
            tops.append(
                [
                    {a["token"]: float(a["logprob"]) for a in t.get("top_logprobs") or [t]}
                    for t in lp or []
                ]
            )
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise _garbage(base_url, f"chat choice without {exc}") from None
    return ChatResult(texts, tops if any_lp else None, cached)


def token_offsets(res: CompletionResult) -> list[int] | None:
    """Each echoed token's character offset in ``res.text``: the server's ``text_offset`` when
    every token sits at its offset, else the running sum of the tokens' lengths when they tile
    the text; None when neither holds (e.g. byte offsets, or a character split over tokens)."""
    text, toks = res.text, res.tokens
    offs = list(res.text_offset)
    if len(offs) == len(toks) and all(
        text[o : o + len(t)] == t for o, t in zip(offs, toks, strict=True)
    ):
        return offs
    offs, pos = [], 0
    for t in toks:
        offs.append(pos)
        pos += len(t)
    return offs if "".join(toks) == text[:pos] else None


def parse_completion(data: dict[str, Any], base_url: str, cached: bool = False) -> CompletionResult:
    """Read a ``/completions`` answer (first choice, legacy ``logprobs`` object) into a result."""
    try:
        choice = data["choices"][0]
        lp = choice.get("logprobs") or {}
        tokens = [str(t) for t in lp.get("tokens") or []]
        token_lps = [None if v is None else float(v) for v in lp.get("token_logprobs") or []]
        tops = [
            {str(k): float(v) for k, v in (t or {}).items()} for t in lp.get("top_logprobs") or []
        ]
        offsets = [int(v) for v in lp.get("text_offset") or []]
        return CompletionResult(str(choice["text"]), tokens, token_lps, tops, cached, offsets)
    except (KeyError, TypeError, ValueError, AttributeError, IndexError) as exc:
        raise _garbage(base_url, f"completion choice without {exc}") from None
