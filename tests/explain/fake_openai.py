"""A loopback server speaking the OpenAI chat protocol (127.0.0.1), shared by the explain tests.

:func:`serve` runs a :class:`Loopback` whose ``default`` answers every request not scripted;
:func:`neuron_reader` is a deterministic explainer + simulator:

- an **explainer** prompt (OpenAI's ``token<TAB>value`` records or delphi's ``("token", value)``
  lists) is answered ``the token "X"``, X the token with the highest value in the prompt (the
  first one on ties); with ``seed`` 0 in a best-of-k request it names the lowest-valued token
  instead (a bad candidate for best-of-k to reject);
- a **simulator** prompt is answered with a JSON list: 10 for every token named (quoted) in the
  explanation, 0 for the others; with ``logprobs`` asked and offered, every number carries
  ``top_logprobs`` (10: p=0.9 / 0: p=0.1 and the reverse);
- the logprobs **probe** (``Say 0.``) is answered ``0``, with top_logprobs when offered.
"""

from __future__ import annotations

import json
import math
import re
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

Reply = tuple[int, dict[str, str], bytes]


def chat_answer(text: str, top: list[dict[str, float]] | None = None) -> dict[str, Any]:
    """A ``/chat/completions`` answer; ``top``: per generated token, ``{token: logprob}``."""
    choice: dict[str, Any] = {"index": 0, "message": {"role": "assistant", "content": text}}
    if top is not None:
        choice["logprobs"] = {
            "content": [
                {
                    "token": max(t, key=t.__getitem__),
                    "logprob": max(t.values()),
                    "top_logprobs": [{"token": k, "logprob": v} for k, v in t.items()],
                }
                for t in top
            ]
        }
    return {"object": "chat.completion", "choices": [choice]}


def ok(obj: dict[str, Any]) -> Reply:
    return 200, {"Content-Type": "application/json"}, json.dumps(obj).encode()


@dataclass
class Loopback:
    """A tiny OpenAI-protocol server: ``script`` answers each request (default: a chat answer)."""

    script: list[Reply] = field(default_factory=list)
    default: Callable[[dict[str, Any]], Reply] = lambda body: ok(chat_answer("hi"))
    delay_s: float = 0.0
    seen: list[dict[str, Any]] = field(default_factory=list)
    in_flight: int = 0
    max_in_flight: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)
    url: str = ""


@contextmanager
def serve(state: Loopback | None = None) -> Iterator[Loopback]:
    """Run ``state`` on 127.0.0.1 (a free port) until the block ends; ``state.url`` is its /v1."""
    state = state or Loopback()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            with state.lock:
                state.seen.append({"path": self.path, "headers": dict(self.headers), "body": body})
                state.in_flight += 1
                state.max_in_flight = max(state.max_in_flight, state.in_flight)
                reply = state.script.pop(0) if state.script else state.default(body)
            time.sleep(state.delay_s)
            with state.lock:
                state.in_flight -= 1
            status, headers, data = reply
            self.send_response(status)
            for k, v in headers.items():
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.url = f"http://127.0.0.1:{server.server_address[1]}/v1"
    thread = threading.Thread(target=server.serve_forever, args=(0.02,), daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


HI, LO = math.log(0.9), math.log(0.1)
PAIR = re.compile(r'\(("(?:[^"\\]|\\.)*"), (\d+)\)')


def is_simulation(body: dict[str, Any]) -> bool:
    return "predict how it will fire" in body["messages"][0]["content"]


def values(body: dict[str, Any]) -> list[tuple[str, int]]:
    user = body["messages"][-1]["content"]
    if "[EXPLANATION]" in body["messages"][0]["content"]:  # delphi
        return [(json.loads(t), int(v)) for t, v in PAIR.findall(user)]
    out = []
    for line in user.split("\n"):
        tok, tab, val = line.rpartition("\t")
        if tab and val.isdigit():
            out.append((tok, int(val)))
    return out


def _explain(body: dict[str, Any]) -> str:
    vals = values(body)
    if not vals:
        return "nothing"
    pick = min if body.get("seed") == 0 else max
    tok = pick(vals, key=lambda tv: tv[1])[0]
    named = f"the token {json.dumps(tok.strip())}"
    if "[EXPLANATION]" in body["messages"][0]["content"]:
        return f"Looking at the examples.\n[EXPLANATION]: {named}"
    return f" {named}."


def _simulate(body: dict[str, Any], logprobs: bool) -> dict[str, Any]:
    user = body["messages"][-1]["content"]
    expl = re.search(r"behavior: the main thing this neuron does is find (.*)", user)
    named = {json.loads(f'"{x}"') for x in re.findall(r'"((?:[^"\\]|\\.)*)"', expl.group(1))}
    block = user.split("<start>\n", 1)[1].split("<end>", 1)[0]
    toks = [line.rpartition("\t")[0] for line in block.split("\n") if line]
    vals = [10 if t.strip() and t.strip() in named else 0 for t in toks]
    text = json.dumps(vals)
    if not (logprobs and body.get("logprobs")):
        return chat_answer(text)
    top: list[dict[str, float]] = [{"[": 0.0}]
    for n, v in enumerate(vals):
        top.append({str(v): HI, "0" if v else "10": LO})
        top.append({", " if n + 1 < len(vals) else "]": 0.0})
    return chat_answer(text, top)


def neuron_reader(logprobs: bool = True) -> Callable[[dict[str, Any]], Reply]:
    """The deterministic explainer + simulator of the module doc."""

    def answer(body: dict[str, Any]) -> Reply:
        first = body["messages"][-1]["content"]
        if first == "Say 0.":
            top = [{"0": -0.1, "1": -2.4}] if logprobs and body.get("logprobs") else None
            return ok(chat_answer("0", top))
        if is_simulation(body):
            return ok(_simulate(body, logprobs))
        return ok(chat_answer(_explain(body)))

    return answer
