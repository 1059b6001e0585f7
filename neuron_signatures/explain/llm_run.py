"""``--explainer llm``: explain and score one layer's neurons through an OpenAI-compatible server.

Output goes to ``<atlas>/explanations-llm/`` (:mod:`.llm_output`); responses are cached in
``<atlas>/llm-cache/``. Per layer:

1. Explain every neuron side that goes that way (:mod:`.llm`, steps 1-2), all requests at once
   on the client's thread pool; with ``best_of > 1`` choose on the train validation slice.
2. Simulate each chosen explanation on the side's held-out windows (the same
   :func:`.split.held_out` windows and masks as the offline scorer) and, for the **floor**, the
   explanation of the deranged neuron (:func:`.scoring.derangement`) on the same windows.
3. Score with :func:`.scoring.pooled_pearson` (top-and-random, random-only), as offline.
4. Detection and fuzzing (:mod:`.classify`, :mod:`.llm_classify`): balanced accuracy and AUC
   of each chosen explanation on held-out windows, and the same with the deranged neuron's
   explanation (the floor), under each side's ``classifiers``.

``scorers`` picks among simulation, detection and fuzzing (default: all three). The record of
a side is version :data:`.llm_output.RECORD_VERSION` (2: ``classifiers`` added; a version-1
folder, without them, still reads).

A neuron whose requests fail (refused, timed out, garbage) gets ``"error"`` in its record and no
sides; the run goes on, unless a whole batch of requests finds the server gone (then it stops
with the layers done so far kept, see :meth:`LLMExplainer._sim`). ``--resume`` redoes the
layers without a file or holding an error: every answer already received comes from the cache,
so only the failed requests reach the server again.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import BadArgumentError
from . import classify, llm
from .client import CompletionResult, LLMServerError, OpenAIClient, ServerGoneError
from .forward import RandomTokens
from .layer import SCORES, _num, blank_records
from .llm_classify import SideData, classify_side
from .llm_output import (
    CACHE,
    FOLDER,
    RECORD_VERSION,
    failed,
    read_llm_explanations,
    summary,
    write_records,
)
from .lookup import SIDES
from .scoring import derangement, pooled_pearson
from .split import LayerArrays, Windows, check_disjoint, held_out, train_tokens

log = logging.getLogger(__name__)


@dataclass
class LLMSettings:
    """The LLM explainer's flags.

    Attributes:
        base_url / model: the OpenAI-compatible server and the model it serves.
        api_key_env: NAME of the variable holding the API key (None: no key).
        best_of: explanations sampled per side; the simulator keeps the best on the train
            validation slice.
        concurrency: requests in flight at once.
        prompt_format: ``openai`` (token<TAB>activation records) or ``delphi`` (<<highlights>>).
        max_examples: train windows shown to the explainer per side.
        timeout_s / max_retries: per request.
        scorers: among :data:`.classify.SCORERS` (simulation, detection, fuzzing).
        simulator: ``auto`` (the best method the server offers) or one of
            :data:`.llm.SIM_METHODS`, refused at start when the server does not offer it.
    """

    base_url: str | None = None
    model: str | None = None
    api_key_env: str | None = None
    best_of: int = 1
    concurrency: int = 4
    prompt_format: str = "openai"
    max_examples: int = 10
    timeout_s: float = 60.0
    max_retries: int = 4
    scorers: tuple[str, ...] = classify.SCORERS
    simulator: str = "auto"


def check(s: LLMSettings) -> None:
    """Refuse bad flags before anything is sent or written."""
    if not s.base_url:
        raise BadArgumentError(
            "--explainer llm needs --base_url (e.g. http://127.0.0.1:8080/v1) and --model"
        )
    if not s.model:
        raise BadArgumentError("--explainer llm needs --model (the name the server serves)")
    if s.best_of < 1:
        raise BadArgumentError(f"--best_of must be at least 1 (e.g. 5), got {s.best_of}")
    if s.prompt_format not in llm.FORMATS:
        raise BadArgumentError(f"--prompt_format must be one of {llm.FORMATS}")
    if s.max_examples < 1:
        raise BadArgumentError("--max_examples must be at least 1 (e.g. 10)")
    if s.simulator != "auto" and s.simulator not in llm.SIM_METHODS:
        raise BadArgumentError(
            f"--simulator {s.simulator}: pick auto or one of {', '.join(llm.SIM_METHODS)}"
        )
    bad = [x for x in s.scorers if x not in classify.SCORERS]
    if bad or not s.scorers:
        raise BadArgumentError(
            f"--scorers {','.join(s.scorers) or '(none)'}: pick one or more of "
            f"{','.join(classify.SCORERS)}"
        )


class LLMExplainer:
    """The client, the server's capabilities (probed once) and the per-layer method."""

    def __init__(self, s: LLMSettings, atlas_root: Path) -> None:
        check(s)
        assert s.base_url is not None and s.model is not None
        self.s = s
        self.client = OpenAIClient(
            s.base_url,
            s.model,
            api_key_env=s.api_key_env,
            cache_dir=atlas_root / CACHE,
            concurrency=s.concurrency,
            timeout_s=s.timeout_s,
            max_retries=s.max_retries,
        )
        try:
            caps = self.client.probe()  # unreachable server or wrong key: raises, nothing written
            want = s.simulator
            echo = "simulation" in s.scorers and want in ("auto", "prompt_logprobs")
            echo = echo and self.client.probe_echo()
            if want == "prompt_logprobs" and "simulation" in s.scorers and not echo:
                raise BadArgumentError(
                    f"{s.base_url} does not echo prompt logprobs on /completions: "
                    "use --simulator auto (or top_logprobs / json)"
                )
            if want == "top_logprobs" and not caps.top_logprobs:
                raise BadArgumentError(
                    f"{s.base_url} gives no top_logprobs on /chat/completions: "
                    "use --simulator auto (or json)"
                )
        except BaseException:
            self.client.close()
            raise
        self.logprobs = caps.top_logprobs
        if want in llm.SIM_METHODS:
            self.method = want
        else:
            self.method = (
                "prompt_logprobs" if echo else "top_logprobs" if caps.top_logprobs else "json"
            )

    def close(self) -> None:
        self.client.close()

    def params(self) -> dict[str, Any]:
        """The explainer's parameters for the manifest (no key, no concurrency)."""
        s = self.s
        return {
            "name": "llm",
            "base_url": s.base_url,
            "model": s.model,
            "prompt_format": s.prompt_format,
            "best_of": s.best_of,
            "max_examples": s.max_examples,
            "simulator": "all-at-once 0-10 per token",
            "simulator_expected_value_from": self.method,
            "scorers": list(s.scorers),
            "classifier": {
                "threshold": classify.THRESHOLD,
                "examples_per_prompt": classify.N_SHOWN,
                "probabilities_from": "top_logprobs" if self.logprobs else "none (no AUC)",
            },
            "record_version": RECORD_VERSION,
        }

    def _sim(self, requests: dict[tuple[Any, ...], llm.Request]) -> dict[tuple[Any, ...], Any]:
        """Answers of ``requests``, all queued at once; once ``4 × concurrency`` requests in a
        row find the server gone (unreachable, or 429/5xx after every retry) the rest are not
        sent and the run stops, so a dead server costs one batch of retries, not one per
        neuron."""
        keys = list(requests)
        stop = max(8, 4 * self.s.concurrency)
        answers = self.client.send_many([requests[k] for k in keys], stop_after=stop)
        skipped = [a for a in answers if isinstance(a, ServerGoneError)]
        if skipped:
            last = next(a for a in answers if isinstance(a, LLMServerError) and a not in skipped)
            raise LLMServerError(
                f"stopped: {stop} requests in a row failed ({last}); the layers already "
                "written are kept: rerun with --resume once the server is back"
            )
        return dict(zip(keys, answers, strict=True))

    def _mend_echoes(
        self,
        answers: dict[tuple[Any, ...], Any],
        src: dict[tuple[Any, ...], tuple[str, list[str]]],
        sign: llm.Sign,
    ) -> None:
        """Echoed simulator answers whose tokens cannot be aligned with the prompt (e.g. a
        character split over two tokens) are asked again through chat, in place; the method
        recorded per side (``simulated_with``) then names both."""
        if self.method != "prompt_logprobs":
            return
        chat = "top_logprobs" if self.logprobs else "json"
        redo: dict[tuple[Any, ...], llm.Request] = {}
        for k, a in answers.items():
            if isinstance(a, CompletionResult):
                expl, toks = src[k]
                try:
                    llm.parse_echoed(a, len(toks))
                except LLMServerError:
                    redo[k] = llm.simulator_request(expl, toks, sign, chat)
        if redo:
            log.info("%d echoed simulations did not align: asked through chat", len(redo))
            answers.update(self._sim(redo))

    def explain_layer(
        self, arr: LayerArrays, win: Windows, rnd: RandomTokens, vocab: list[str], seed: int
    ) -> list[dict[str, Any]]:
        """One record per neuron of ``arr`` (module doc)."""
        s, d, layer = self.s, arr.d, arr.layer
        train = train_tokens(arr, win)
        acts = rnd.layer_acts(layer)
        rnd_tokens = {int(w): llm.window_tokens(win, int(w), vocab) for w in rnd.wins}
        errors: dict[int, str] = {}
        records = blank_records(arr)
        for side in SIDES:
            sign: llm.Sign = "positive" if side == "positive" else "negative"
            f = 1.0 if side == "positive" else -1.0
            goes = arr.max > 0 if side == "positive" else arr.min < 0
            ho = held_out(arr, win, rnd.wins, rnd.g, side)
            check_disjoint(train, ho, rnd.g)
            recs = {
                i: llm.train_records(arr, win, i, side, vocab, s.max_examples)
                for i in np.flatnonzero(goes).tolist()
            }
            recs = {i: r for i, r in recs.items() if r}
            chosen, cands = self._explain(recs, sign, f, errors)
            # the floors' donors are drawn among the neurons asked, not those that succeeded:
            # a resume that mends a failed neuron changes no other neuron's floor
            has = np.zeros(d, bool)
            has[list(recs)] = True
            other = derangement(has, seed, layer, side)
            sd = SideData(sign, chosen, other, ho, acts, rnd, rnd_tokens, win, vocab)
            if "simulation" in s.scorers:
                scored = self._score(sd, errors)
            else:
                scored = {i: _unscored(ho, i) for i in chosen}
            kinds = [k for k in classify.KINDS if k in s.scorers]
            cls = classify_side(self._sim, self.logprobs, kinds, sd, arr, seed)
            for i, expl in chosen.items():
                if i in errors or i in cls.errors:
                    errors.setdefault(i, cls.errors.get(i, ""))
                    continue
                sc, fl, n, how = scored[i]
                records[i]["sides"].append(
                    {
                        "side": side,
                        "explainer": "llm",
                        "explanation": expl,
                        "candidates": cands[i],
                        "simulated_with": how,
                        "train_windows": [r.window for r in recs[i]],
                        "scores": {k: _num(v) for k, v in sc.items()},
                        "floor": {
                            "from_neuron": int(other[i]) if other[i] >= 0 else None,
                            **{k: _num(v) for k, v in fl.items()},
                        },
                        "heldout": {
                            "example_windows": [int(w) for w in ho.ex_windows[i] if w >= 0],
                            "random_windows_excluded": rnd.wins[ho.rnd_excluded[i]].tolist(),
                            "tokens_top_and_random": n[0],
                            "tokens_random_only": n[1],
                        },
                        **({"classifiers": cls.scores[i]} if i in cls.scores else {}),
                    }
                )
        for i, msg in errors.items():
            records[i]["sides"] = []
            records[i]["error"] = msg
        return records

    def _explain(
        self,
        recs: dict[int, list[llm.WindowRecord]],
        sign: llm.Sign,
        f: float,
        errors: dict[int, str],
    ) -> tuple[dict[int, str], dict[int, list[dict[str, Any]]]]:
        """Steps 1-2 of :mod:`.llm`'s method: the chosen explanation and the candidates."""
        s = self.s
        k = s.best_of
        shown = {i: llm.split_validation(r, k) for i, r in recs.items()}
        reqs = {
            (i, j): llm.explainer_request(shown[i][0], sign, s.prompt_format, k, j)
            for i in recs
            for j in range(k)
        }
        answers = self._sim(reqs)
        texts: dict[int, list[str]] = {}
        for (i, _j), res in answers.items():
            try:
                texts.setdefault(i, []).append(llm.parse_explanation(res, s.prompt_format))
            except LLMServerError as exc:
                errors.setdefault(i, f"{sign} side, explainer: {exc}")
        ok = [i for i in recs if i not in errors]
        if k == 1:
            return {i: texts[i][0] for i in ok}, {i: [{"explanation": texts[i][0]}] for i in ok}
        vreq = {
            (i, j, r.window): llm.simulator_request(t, r.tokens, sign, self.method)
            for i in ok
            for j, t in enumerate(texts[i])
            for r in shown[i][1]
        }
        vans = self._sim(vreq)
        vsrc = {
            (i, j, r.window): (t, r.tokens)
            for i in ok
            for j, t in enumerate(texts[i])
            for r in shown[i][1]
        }
        self._mend_echoes(vans, vsrc, sign)
        chosen: dict[int, str] = {}
        cands: dict[int, list[dict[str, Any]]] = {}
        for i in ok:
            val = shown[i][1]
            scores = []
            try:
                for j in range(k):
                    sims = [
                        llm.parse_simulated(vans[(i, j, r.window)], len(r.tokens))[0] for r in val
                    ]
                    scores.append(llm.validation_score(val, sims, f))
            except LLMServerError as exc:
                errors.setdefault(i, f"{sign} side, validation simulator: {exc}")
                continue
            chosen[i] = texts[i][llm.best(scores)]
            cands[i] = [
                {
                    "explanation": t,
                    "validation_score": _num(v),
                    "validation_windows": [r.window for r in val],
                }
                for t, v in zip(texts[i], scores, strict=True)
            ]
        return chosen, cands

    def _score(
        self, sd: SideData, errors: dict[int, str]
    ) -> dict[int, tuple[dict[str, float], dict[str, float], tuple[int, int], list[str]]]:
        """Steps 2-3 of the module doc: simulate, then score and floor each chosen neuron."""
        chosen, other, ho, acts, rnd = sd.chosen, sd.other, sd.ho, sd.acts, sd.rnd
        rnd_tokens, win, vocab, sign = sd.rnd_tokens, sd.win, sd.vocab, sd.sign
        lp = self.method
        ex_tokens = {
            int(w): llm.window_tokens(win, int(w), vocab)
            for i in chosen
            for w in ho.ex_windows[i]
            if w >= 0
        }
        toks = {**rnd_tokens, **ex_tokens}

        def windows(i: int) -> list[int]:
            return [int(w) for w in ho.ex_windows[i] if w >= 0] + [int(w) for w in rnd.wins]

        reqs: dict[tuple[Any, ...], llm.Request] = {}
        for i in chosen:
            for e in {chosen[i], chosen.get(int(other[i]))} - {None}:
                for w in windows(i):
                    assert e is not None
                    reqs.setdefault((e, w), llm.simulator_request(e, toks[w], sign, lp))
        answers = self._sim(reqs)
        self._mend_echoes(answers, {k: (k[0], toks[k[1]]) for k in answers}, sign)
        parsed: dict[tuple[Any, ...], tuple[list[float], str] | LLMServerError] = {}

        def sim(key: tuple[str, int]) -> tuple[list[float], str]:
            """An answer parsed once (a window's answer serves its neuron and the floors)."""
            if key not in parsed:
                try:
                    parsed[key] = llm.parse_simulated(answers[key], len(toks[key[1]]))
                except LLMServerError as exc:
                    parsed[key] = exc
            got = parsed[key]
            if isinstance(got, LLMServerError):
                raise got
            return got

        f = 1.0 if sign == "positive" else -1.0
        out = {}
        for i, e in chosen.items():
            exps = [e, chosen.get(int(other[i]))]
            res: list[dict[str, float]] = []
            try:
                for expl in exps:
                    res.append(self._pearson(i, expl, sim, ho, acts, rnd, win, f))
            except LLMServerError as exc:
                errors.setdefault(i, f"{sign} side, simulator: {exc}")
                continue
            x_ok = ho.ex_ok[i].sum() + ho.rnd_ok[i].sum()
            how = sorted({sim((e, w))[1] for w in windows(i)})
            out[i] = (res[0], res[1], (int(x_ok), int(ho.rnd_ok[i].sum())), how)
        return out

    @staticmethod
    def _pearson(
        i: int,
        expl: str | None,
        sim: Callable[[tuple[str, int]], tuple[list[float], str]],
        ho: Any,
        acts: np.ndarray,
        rnd: RandomTokens,
        win: Windows,
        f: float,
    ) -> dict[str, float]:
        if expl is None:
            return {k: float("nan") for k in SCORES}
        kh = ho.ex_windows.shape[1]
        y_e = np.zeros((kh, win.ctx_len))
        for j, w in enumerate(ho.ex_windows[i]):
            if w >= 0:
                vals, _ = sim((expl, int(w)))
                y_e[j, win.start : win.start + len(vals)] = vals
        y_r = np.concatenate([sim((expl, int(w)))[0] for w in rnd.wins])
        x_e = f * ho.ex_value[i].reshape(-1)
        x_r = f * acts[:, i].astype(np.float64)
        ok_e, ok_r = ho.ex_ok[i].reshape(-1), ho.rnd_ok[i]
        both = pooled_pearson(
            np.concatenate([x_e, x_r])[None],
            np.concatenate([y_e.reshape(-1), y_r])[None],
            np.concatenate([ok_e, ok_r])[None],
        )[0]
        rand = pooled_pearson(x_r[None], y_r[None], ok_r[None])[0]
        return {"top_and_random": float(both), "random_only": float(rand)}


def _unscored(ho: Any, i: int) -> tuple[dict[str, Any], dict[str, Any], tuple[int, int], list]:
    """The simulation fields of a side when the simulation scorer was not asked for: null
    scores, the held-out sizes all the same."""
    nulls = {k: float("nan") for k in SCORES}
    n_r = int(ho.rnd_ok[i].sum())
    return nulls, nulls, (int(ho.ex_ok[i].sum()) + n_r, n_r), []


__all__ = [
    "CACHE",
    "FOLDER",
    "LLMExplainer",
    "LLMSettings",
    "check",
    "failed",
    "read_llm_explanations",
    "summary",
    "write_records",
]
