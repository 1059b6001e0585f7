"""The OpenAI-compatible client against a loopback server speaking the protocol (127.0.0.1)."""

from __future__ import annotations

import json
import logging
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from neuron_signatures.errors import BadArgumentError, NeuronSignaturesError
from neuron_signatures.explain.client import (
    Capabilities,
    LLMServerError,
    MissingAPIKeyError,
    OpenAIClient,
    ResponseCache,
    cache_key,
    retry_after_s,
)
from tests.explain.fake_openai import Loopback, Reply, chat_answer, ok, serve

SECRET = "sk-test-DO-NOT-LEAK-1234567890"


@pytest.fixture
def loopback() -> Iterator[Loopback]:
    with serve() as state:
        yield state


@pytest.fixture
def waits() -> list[float]:
    return []


def cached_bodies(folder: Path) -> list[dict[str, Any]]:
    """The request bodies committed to the response cache in ``folder``."""
    cache = ResponseCache(folder)
    try:
        return [body for _, body in cache.entries()]
    finally:
        cache.close()


def make(url: str, tmp_path: Path, waits: list[float], **kw: Any) -> OpenAIClient:
    kw.setdefault("cache_dir", tmp_path / "cache")
    return OpenAIClient(url, "tiny-model", sleep=waits.append, seed=0, timeout_s=5, **kw)


def test_chat_request_shape_and_bearer_key(
    loopback: Loopback, tmp_path: Path, waits: list[float], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MY_KEY", SECRET)
    with make(loopback.url + "/", tmp_path, waits, api_key_env="MY_KEY") as c:
        res = c.chat([{"role": "user", "content": "hello"}], temperature=0.0, max_tokens=8)
    assert res.texts == ["hi"] and res.top_logprobs is None and not res.cached
    (req,) = loopback.seen
    assert req["path"] == "/v1/chat/completions"
    assert req["headers"]["Authorization"] == f"Bearer {SECRET}"
    assert req["body"] == {
        "model": "tiny-model",
        "messages": [{"role": "user", "content": "hello"}],
        "temperature": 0.0,
        "max_tokens": 8,
    }


def test_completions_with_echo_reads_prompt_logprobs(
    loopback: Loopback, tmp_path: Path, waits: list[float]
) -> None:
    lp = {
        "tokens": ["a", "\t", "7"],
        "token_logprobs": [None, -0.5, -1.25],
        "top_logprobs": [None, {"\t": -0.5}, {"7": -1.25, "3": -2.0}],
    }
    loopback.script.append(ok({"choices": [{"text": "a\t7", "logprobs": lp}]}))
    with make(loopback.url, tmp_path, waits) as c:
        res = c.completion("a\t7", echo=True, logprobs=2, max_tokens=0)
    (req,) = loopback.seen
    assert req["path"] == "/v1/completions" and "Authorization" not in req["headers"]
    assert req["body"] == {
        "model": "tiny-model",
        "prompt": "a\t7",
        "echo": True,
        "logprobs": 2,
        "max_tokens": 0,
    }
    assert res.tokens == ["a", "\t", "7"] and res.token_logprobs == [None, -0.5, -1.25]
    assert res.top_logprobs == [{}, {"\t": -0.5}, {"7": -1.25, "3": -2.0}]


def test_429_with_retry_after_then_500_are_retried(
    loopback: Loopback, tmp_path: Path, waits: list[float]
) -> None:
    loopback.script += [
        (429, {"Retry-After": "7"}, b"slow down"),
        (500, {}, b"oops"),
        ok(chat_answer("done")),
    ]
    with make(loopback.url, tmp_path, waits, backoff_s=0.5) as c:
        assert c.chat([{"role": "user", "content": "x"}]).texts == ["done"]
        assert (c.stats.sent, c.stats.retries) == (3, 2)
    assert len(loopback.seen) == 3
    assert waits[0] == 7.0  # Retry-After honoured
    assert 0.5 * 2 * 0.5 <= waits[1] < 0.5 * 2 * 1.5  # backoff of the second attempt, with jitter


def test_retries_are_bounded_and_the_error_names_server_and_fix(
    loopback: Loopback, tmp_path: Path, waits: list[float]
) -> None:
    loopback.default = lambda body: (503, {}, b"busy")
    with (
        make(loopback.url, tmp_path, waits, max_retries=2) as c,
        pytest.raises(LLMServerError) as ei,
    ):
        c.chat([{"role": "user", "content": "x"}])
    assert len(loopback.seen) == 3 and len(waits) == 2
    assert 0.25 <= waits[0] < 0.75 and 0.5 <= waits[1] < 1.5  # 0.5 s * 2**attempt * jitter
    msg = str(ei.value)
    assert loopback.url in msg and "HTTP 503" in msg and "--concurrency" in msg
    assert ei.value.status == 503 and isinstance(ei.value, NeuronSignaturesError)


def test_backoff_doubles_and_is_capped() -> None:
    c = OpenAIClient(
        "http://127.0.0.1:9/v1", "m", backoff_s=1.0, max_backoff_s=5.0, max_retry_after_s=60, seed=1
    )
    w = [c._wait_s(a, None) for a in range(6)]
    c.close()
    assert all(0.5 * 2**a <= x < 1.5 * 2**a for a, x in enumerate(w[:2]))
    assert max(w) == 5.0 and c._wait_s(0, 40.0) == 40.0 and c._wait_s(0, 100.0) == 60.0
    assert retry_after_s("3") == 3.0 and retry_after_s(None) is None and retry_after_s("x") is None
    assert retry_after_s("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0


def test_timeout_is_retried_then_a_domain_error(
    loopback: Loopback, tmp_path: Path, waits: list[float]
) -> None:
    loopback.delay_s = 0.4
    c = make(loopback.url, tmp_path, waits, max_retries=1)
    c._http.timeout = httpx.Timeout(0.1)
    with c, pytest.raises(LLMServerError, match="ReadTimeout") as ei:
        c.chat([{"role": "user", "content": "x"}])
    assert (
        len(waits) == 1 and len(loopback.seen) == 2 and "unreachable after 2 tries" in str(ei.value)
    )


def test_legacy_cache_files_are_read_and_a_corrupt_one_is_refetched(
    loopback: Loopback, tmp_path: Path, waits: list[float]
) -> None:
    """The per-answer JSON files of older versions still answer; a torn one is asked again."""
    msgs = [{"role": "user", "content": "x"}]
    body = {"model": "tiny-model", "messages": msgs}
    key = cache_key(loopback.url, "tiny-model", "chat/completions", body)
    legacy = tmp_path / "cache" / key[:2] / f"{key}.json"
    legacy.parent.mkdir(parents=True)
    legacy.write_text(json.dumps({"response": chat_answer("from an old run")}))
    with make(loopback.url, tmp_path, waits) as c:
        assert c.chat(msgs).texts == ["from an old run"] and not loopback.seen
        legacy.write_text("{half a fi")
        assert c.chat(msgs).texts == ["hi"]
        assert (c.stats.misses, c.stats.hits, len(loopback.seen)) == (1, 1, 1)
        assert c.chat(msgs).cached and c.stats.as_dict()["hit_rate"] == 2 / 3


def test_client_error_is_not_retried(
    loopback: Loopback, tmp_path: Path, waits: list[float]
) -> None:
    loopback.script.append((404, {}, b'{"error": "no such model"}'))
    with make(loopback.url, tmp_path, waits) as c, pytest.raises(LLMServerError, match="HTTP 404"):
        c.chat([{"role": "user", "content": "x"}])
    assert len(loopback.seen) == 1 and waits == []


def test_connection_refused_is_retried_then_a_domain_error(
    tmp_path: Path,
    waits: list[float],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setenv("MY_KEY", SECRET)
    caplog.set_level(logging.DEBUG)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed when the block ends: nothing listens there
    url = f"http://127.0.0.1:{port}/v1"
    c = make(url, tmp_path, waits, max_retries=2, api_key_env="MY_KEY")
    with c, pytest.raises(LLMServerError) as ei:
        c.chat([{"role": "user", "content": "x"}])
    assert len(waits) == 2 and c.stats.sent == 3 and ei.value.status is None
    assert f"{url} unreachable after 3 tries" in str(ei.value) and "--base_url" in str(ei.value)
    assert SECRET not in str(ei.value) and SECRET not in caplog.text


@pytest.mark.parametrize(
    "payload", [b"<html>not json</html>", b'{"no": "choices"}', b'{"choices": [{"text": 1}]}']
)
def test_malformed_answer_is_a_domain_error_and_not_cached(
    loopback: Loopback, tmp_path: Path, waits: list[float], payload: bytes
) -> None:
    loopback.default = lambda body: (200, {"Content-Type": "application/json"}, payload)
    with make(loopback.url, tmp_path, waits) as c:
        with pytest.raises(LLMServerError, match=loopback.url):
            c.chat([{"role": "user", "content": "x"}])
        assert waits == []
    assert len(loopback.seen) == 1
    assert not cached_bodies(tmp_path / "cache")


def test_rerun_is_served_from_the_cache(
    loopback: Loopback, tmp_path: Path, waits: list[float]
) -> None:
    msgs = [{"role": "user", "content": "explain"}]
    with make(loopback.url, tmp_path, waits) as c:
        first = c.chat(msgs, temperature=1.0, n=1)
        other = c.chat(msgs, temperature=0.5, n=1)  # other parameters: another key
        assert (c.stats.hits, c.stats.misses) == (0, 2)
    with make(loopback.url, tmp_path, waits) as c2:  # a rerun: a new client, the same folder
        again = c2.chat(msgs, temperature=1.0, n=1)
        assert c2.stats.hits == 1 and c2.stats.misses == 0 and c2.stats.hit_rate == 1.0
    assert len(loopback.seen) == 2
    assert again.cached and again.texts == first.texts and not first.cached and not other.cached
    body = {"model": "tiny-model", "messages": msgs, "temperature": 1.0, "n": 1}
    key = cache_key(loopback.url, "tiny-model", "chat/completions", body)
    assert body in cached_bodies(tmp_path / "cache")
    # another server or model is another key
    assert key != cache_key(loopback.url + "x", "tiny-model", "chat/completions", body)
    assert key != cache_key(loopback.url, "other", "chat/completions", body)


def test_concurrency_limit_is_respected(
    loopback: Loopback, tmp_path: Path, waits: list[float]
) -> None:
    loopback.delay_s = 0.05
    reqs = [([{"role": "user", "content": f"q{i}"}], {"seed": i}) for i in range(12)]
    with make(loopback.url, tmp_path, waits, concurrency=3) as c:
        out = c.chat_many(reqs)
    assert all(not isinstance(r, Exception) and r.texts == ["hi"] for r in out)
    assert len(loopback.seen) == 12
    assert loopback.max_in_flight == 3  # reached, never passed


def test_concurrency_limit_holds_for_callers_own_threads(
    loopback: Loopback, tmp_path: Path, waits: list[float]
) -> None:
    loopback.delay_s = 0.05
    with make(loopback.url, tmp_path, waits, concurrency=2) as c:
        threads = [
            threading.Thread(target=c.chat, args=([{"role": "user", "content": f"t{i}"}],))
            for i in range(8)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join(10)
    assert len(loopback.seen) == 8 and loopback.max_in_flight == 2


def test_the_same_question_asked_at_once_is_sent_once(
    loopback: Loopback, tmp_path: Path, waits: list[float]
) -> None:
    loopback.delay_s = 1.0  # the first is still on its way when the others ask (a busy CI too)
    same = ([{"role": "user", "content": "same"}], {"temperature": 0})
    reqs = [same, ([{"role": "user", "content": "other"}], {}), same, same]
    with make(loopback.url, tmp_path, waits, concurrency=4, cache_dir=None) as c:
        out = c.chat_many(reqs)
        assert (c.stats.misses, c.stats.hits, c.stats.sent) == (2, 2, 2)
    assert len(loopback.seen) == 2
    answers = [r for r in out if not isinstance(r, Exception)]
    assert len(answers) == 4 and [r.texts for r in answers] == [["hi"]] * 4
    assert sum(r.cached for r in answers) == 2 and not answers[1].cached  # two waited


def test_a_failed_question_is_asked_again_by_the_one_who_waited(
    loopback: Loopback, tmp_path: Path, waits: list[float]
) -> None:
    loopback.delay_s = 1.0
    loopback.script = [(400, {}, b"bad request")]  # the first try fails, the next is answered
    msgs = [{"role": "user", "content": "same"}]
    with make(loopback.url, tmp_path, waits, concurrency=2) as c:
        out = c.chat_many([(msgs, {}), (msgs, {})])
        assert (c.stats.misses, c.stats.hits, c.stats.sent) == (2, 0, 2)
    errors = [r for r in out if isinstance(r, LLMServerError)]
    assert len(errors) == 1 and errors[0].status == 400
    assert [r.texts for r in out if not isinstance(r, Exception)] == [["hi"]]
    assert len(loopback.seen) == 2 and not waits  # a 400 is not retried: asked again once


def test_chat_many_returns_errors_in_place(
    loopback: Loopback, tmp_path: Path, waits: list[float]
) -> None:
    def answer(body: dict[str, Any]) -> Reply:
        if body["messages"][0]["content"] == "bad":
            return 400, {}, b"bad request"
        return ok(chat_answer(body["messages"][0]["content"]))

    loopback.default = answer
    reqs = [([{"role": "user", "content": t}], {}) for t in ["a", "bad", "c"]]
    with make(loopback.url, tmp_path, waits, concurrency=2) as c:
        out = c.chat_many(reqs)
    assert isinstance(out[1], LLMServerError) and out[1].status == 400
    assert [r.texts for r in (out[0], out[2]) if not isinstance(r, Exception)] == [["a"], ["c"]]


def test_secret_is_absent_from_cache_logs_and_errors(
    loopback: Loopback,
    tmp_path: Path,
    waits: list[float],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setenv("MY_KEY", SECRET)
    caplog.set_level(logging.DEBUG)
    loopback.script += [(500, {}, b"x"), ok(chat_answer("fine"))]
    loopback.default = lambda body: (401, {}, b"unauthorized")
    with make(loopback.url, tmp_path, waits, api_key_env="MY_KEY") as c:
        c.chat([{"role": "user", "content": "one"}])
        with pytest.raises(LLMServerError) as ei:
            c.chat([{"role": "user", "content": "two"}])
        shown = repr(c)
    assert all(r["headers"]["Authorization"] == f"Bearer {SECRET}" for r in loopback.seen)
    assert len(cached_bodies(tmp_path / "cache")) == 1
    stored = b"".join(f.read_bytes() for f in (tmp_path / "cache").rglob("*") if f.is_file())
    assert stored and SECRET.encode() not in stored and b"MY_KEY" not in stored
    assert SECRET not in caplog.text and "retry 1" in caplog.text  # the retry was logged
    assert SECRET not in str(ei.value) and SECRET not in repr(ei.value) and SECRET not in shown
    assert "--api_key_env" in str(ei.value)


def test_unset_key_variable_is_a_one_line_domain_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("NOPE_KEY", raising=False)
    with pytest.raises(MissingAPIKeyError, match="NOPE_KEY is unset") as ei:
        OpenAIClient("http://127.0.0.1:9/v1", "m", api_key_env="NOPE_KEY")
    assert isinstance(ei.value, BadArgumentError) and "\n" not in str(ei.value)
    with pytest.raises(BadArgumentError, match="--base_url"):
        OpenAIClient("127.0.0.1:9", "m")
    with pytest.raises(BadArgumentError, match="--concurrency"):
        OpenAIClient("http://127.0.0.1:9/v1", "m", concurrency=0)


def test_probe_detects_top_logprobs(loopback: Loopback, tmp_path: Path, waits: list[float]) -> None:
    loopback.script.append(ok(chat_answer("0", top=[{"0": -0.1, "1": -2.5}])))
    with make(loopback.url, tmp_path, waits) as c:
        assert c.probe() == Capabilities(logprobs=True, top_logprobs=True)
    body = loopback.seen[0]["body"]
    assert body["logprobs"] is True and body["top_logprobs"] == 5 and body["max_tokens"] == 1


@pytest.mark.parametrize(
    ("reply", "caps"),
    [
        (ok(chat_answer("0")), Capabilities(False, False)),
        (ok(chat_answer("0", top=[{"0": -0.1}])), Capabilities(True, False)),
        ((400, {}, b"logprobs not supported"), Capabilities(False, False)),
    ],
)
def test_probe_without_logprobs(
    loopback: Loopback, tmp_path: Path, waits: list[float], reply: Reply, caps: Capabilities
) -> None:
    loopback.script.append(reply)
    with make(loopback.url, tmp_path, waits, cache_dir=None) as c:
        assert c.probe() == caps
    assert len(loopback.seen) == 1


def test_probe_raises_on_a_wrong_key_rather_than_reporting_no_logprobs(
    loopback: Loopback, tmp_path: Path, waits: list[float]
) -> None:
    loopback.script.append((401, {}, b"invalid api key"))
    with make(loopback.url, tmp_path, waits) as c, pytest.raises(LLMServerError, match="HTTP 401"):
        c.probe()


def test_probe_echo_detects_prompt_logprobs_and_caches_the_outcome(
    loopback: Loopback, tmp_path: Path, waits: list[float]
) -> None:
    from tests.explain.fake_openai import neuron_reader

    loopback.default = neuron_reader(echo=True)
    with make(loopback.url, tmp_path, waits) as c:
        assert c.probe_echo()
    (req,) = loopback.seen
    assert req["path"] == "/v1/completions"
    assert {k: req["body"][k] for k in ("echo", "logprobs", "max_tokens")} == {
        "echo": True,
        "logprobs": 5,
        "max_tokens": 1,  # not 0: llama-cpp-python reads 0 as no limit
    }
    with make(loopback.url, tmp_path, waits) as c:  # a rerun asks nothing
        assert c.probe_echo() and c.stats.hits == 1 and c.stats.sent == 0
    assert len(loopback.seen) == 1


@pytest.mark.parametrize(
    "reply",
    [
        (500, {}, b"logits_all is off"),  # refused: tried once, not retried
        (404, {}, b"no such endpoint"),
        ok({"choices": [{"text": "", "logprobs": None}]}),  # no echo
        ok({"choices": [{"text": "Zürich", "logprobs": {"tokens": ["Zürich"]}}]}),  # cut
    ],
)
def test_probe_echo_says_no_to_a_server_without_it(
    loopback: Loopback, tmp_path: Path, waits: list[float], reply: Reply
) -> None:
    loopback.default = lambda body: reply
    with make(loopback.url, tmp_path, waits) as c:
        assert not c.probe_echo()
    assert len(loopback.seen) == 1 and waits == []
    with make(loopback.url, tmp_path, waits) as c:
        assert not c.probe_echo()
    assert len(loopback.seen) == 1  # the no is cached too


def test_probe_echo_checks_offsets_on_text_that_is_not_ascii(
    loopback: Loopback, tmp_path: Path, waits: list[float]
) -> None:
    """Byte offsets are mended from the tokens' lengths; a character split over two tokens
    (undecodable halves) cannot be aligned: no echo, the chat simulator is used."""

    def reply(split: bool) -> Any:
        def answer(body: dict[str, Any]) -> Reply:
            p = body["prompt"]
            toks = ["Z", "\ufffd", "\ufffd", p[2:]] if split else ["Zü", p[2:]]
            offs = [0, 1, 2, 3] if split else [0, 3]  # bytes: "ü" is two
            tops = [{t: 0.0, "x": -2.0} for t in toks]
            lp = {"tokens": toks, "top_logprobs": tops, "text_offset": offs}
            return ok({"choices": [{"text": p, "logprobs": lp}]})

        return answer

    for split, expected in ((False, True), (True, False)):
        loopback.default = reply(split)
        with make(loopback.url, tmp_path / str(split), waits) as c:
            assert c.probe_echo() is expected
