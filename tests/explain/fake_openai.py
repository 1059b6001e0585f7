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
- the logprobs **probe** (``Say 0.``) is answered ``0``, with top_logprobs when offered;
- a **detection** prompt is answered 1 for every example holding a token named in the
  explanation, a **fuzzing** prompt 1 for every example whose highlighted spans are all named
  tokens, 0 for the others (with ``logprobs``: 1 at p=0.9 and the reverse);
- ``/completions`` (a body with ``prompt``) is answered only with ``echo=True``: the prompt cut
  into tokens (tabs, newlines, runs of other characters), ``text_offset``, and per token two
  alternatives; at each ``unknown`` of the simulator's block the alternatives are the
  simulator's value (p=0.9) and its opposite, as in the chat answer. Without ``echo`` (or with
  ``echo=False`` given to :func:`neuron_reader`) it is refused with HTTP 404.
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
    if "prompt" in body:
        return "predict how it will fire" in body["prompt"]
    return "predict how it will fire" in body["messages"][0]["content"]


def classifier_kind(body: dict[str, Any]) -> str | None:
    """``detection`` / ``fuzzing`` for a classifier prompt, else None."""
    system = body["messages"][0]["content"] if "messages" in body else ""
    if "whether the neuron fires on it" in system:
        return "detection"
    if "whether the highlighted tokens" in system:
        return "fuzzing"
    return None


QUOTED = re.compile(r'"((?:[^"\\]|\\.)*)"')


def _named(text: str) -> set[str]:
    return {json.loads(f'"{x}"') for x in QUOTED.findall(text)}


def _classify(body: dict[str, Any], kind: str, logprobs: bool) -> dict[str, Any]:
    user = body["messages"][-1]["content"]
    head, _, rest = user.partition("\n\n")
    named = _named(head)
    vals = []
    for line in rest.split("\n"):
        text = line.split(": ", 1)[1] if ": " in line else ""
        if kind == "detection":
            vals.append(int(any(n and n in text for n in named)))
        else:
            spans = [x.strip() for x in re.findall(r"<<(.*?)>>", text)]
            vals.append(int(bool(spans) and all(x in named for x in spans)))
    if not (logprobs and body.get("logprobs")):
        return chat_answer(json.dumps(vals))
    top: list[dict[str, float]] = [{"[": 0.0}]
    for n, v in enumerate(vals):
        top.append({str(v): HI, str(1 - v): LO})
        top.append({", " if n + 1 < len(vals) else "]": 0.0})
    return chat_answer(json.dumps(vals), top)


def _complete(body: dict[str, Any]) -> dict[str, Any]:
    """An echoed prompt with two alternatives per token (module doc)."""
    prompt = body["prompt"]
    toks = re.findall(r"\t|\n|[^\t\n]+", prompt)
    offs = [0]
    for t in toks[:-1]:
        offs.append(offs[-1] + len(t))
    top: list[dict[str, float] | None] = [{t: HI, "x": LO} for t in toks]
    m = re.search(r"behavior: the main thing this neuron does is find (.*)", prompt)
    lo = prompt.rfind("\n<start>\n")
    if m is not None and lo >= 0:
        named = _named(m.group(1))
        for j, t in enumerate(toks):
            if offs[j] > lo and t == "unknown" and j >= 2 and toks[j - 1] == "\t":
                prev = toks[j - 2].strip()
                v = 10 if prev and prev in named else 0
                top[j] = {str(v): HI, "0" if v else "10": LO}
    top[0] = None
    lp = {
        "tokens": toks,
        "token_logprobs": [None] + [HI] * (len(toks) - 1),
        "top_logprobs": top,
        "text_offset": offs,
    }
    return {"object": "text_completion", "choices": [{"text": prompt, "logprobs": lp}]}


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


def neuron_reader(logprobs: bool = True, echo: bool = False) -> Callable[[dict[str, Any]], Reply]:
    """The deterministic explainer, simulators and classifiers of the module doc."""

    def answer(body: dict[str, Any]) -> Reply:
        if "prompt" in body:
            if not (echo and body.get("echo")):
                return 404, {"Content-Type": "application/json"}, b'{"error": "no completions"}'
            return ok(_complete(body))
        kind = classifier_kind(body)
        if kind is not None:
            return ok(_classify(body, kind, logprobs))
        first = body["messages"][-1]["content"]
        if first == "Say 0.":
            top = [{"0": -0.1, "1": -2.4}] if logprobs and body.get("logprobs") else None
            return ok(chat_answer("0", top))
        if is_simulation(body):
            return ok(_simulate(body, logprobs))
        return ok(chat_answer(_explain(body)))

    return answer


def main() -> None:
    """``python -m tests.explain.fake_openai [delay_s] [echo]``: serve :func:`neuron_reader` on
    127.0.0.1 (a free port), print the URL, stop when stdin closes (benchmarks run it apart, so
    the server has its own interpreter)."""
    import sys

    delay = float(sys.argv[1]) if len(sys.argv) > 1 else 0.0
    echo = len(sys.argv) > 2 and sys.argv[2] == "echo"
    with serve(Loopback(default=neuron_reader(echo=echo), delay_s=delay)) as srv:
        print(srv.url, flush=True)
        sys.stdin.read()


if __name__ == "__main__":
    main()
