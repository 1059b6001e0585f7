"""Detection and fuzzing scores of an explanation: delphi's classifier scorers, for one side.

The method (EleutherAI delphi, ``scorers/classifier/{detection,fuzz}.py``; Paulo et al. 2024,
"Automatically interpreting millions of features in large language models"), on held-out data
only:

1. **Windows**: *activating* ones are the side's held-out example windows (top examples of odd
   rank; bottom ones for the negative side) whose peak signed activation reaches
   ``threshold × m`` (``m``: the neuron's largest activation on that side, negated for the
   negative side); *non-activating* ones are random score-time windows scoring the neuron whose
   peak stays under it, as many as the activating ones, drawn seeded. No window is one the
   explainer saw (:func:`check_unseen`).
2. **Detection**: every window's text as it is; the truth is "activating".
3. **Fuzzing**: activating windows with their tokens at or above ``threshold × m`` highlighted
   ``<<like this>>`` (truth 1), non-activating windows with as many random tokens highlighted
   (the activating windows' mean, at least one; truth 0): does the highlighting match the
   explanation?
4. Samples are shuffled (seeded) and shown ``n_shown`` per prompt; the model answers a JSON
   list of 0/1, one per example (:func:`.prompts.parse_binary`). Where every 0/1 of the answer
   carries ``top_logprobs``, each sample also gets ``P(1) / (P(0) + P(1))``
   (:func:`.prompts.prob_one`): method ``logprobs``, else ``parsed``.
5. **Scores**: balanced accuracy ``(TPR + TNR) / 2`` of the answers; **AUC** (Mann-Whitney, ties
   count half) of ``P(1)`` where the method is ``logprobs`` (else ``null``: unavailable). An
   unparsable answer leaves its samples out (counted in ``n_invalid``), as delphi does.
6. **Floor**: the same samples, the same prompts, another neuron's explanation (the seeded
   derangement of the simulation floor).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .client import ChatResult, LLMServerError
from .prompts import Message, Sign, classifier_messages, parse_binary, prob_one

KINDS = ("detection", "fuzzing")
SCORERS = ("simulation", *KINDS)
THRESHOLD = 0.3  # of the side's largest activation: delphi's highlighting threshold
N_SHOWN = 5  # examples per prompt


@dataclass
class Window:
    """A held-out window: its id, counted tokens (as the prompts show them) and signed values."""

    window: int
    tokens: list[str]
    values: np.ndarray  # float64 [n_tokens], on the side's scale (negated for negative)


@dataclass
class Sample:
    """One example shown to the classifier: the window, its highlighted tokens and the truth."""

    window: int
    tokens: list[str]
    marked: list[bool]
    truth: bool


def parse_scorers(text: str) -> tuple[str, ...]:
    """``"simulation,detection"`` → the scorers in :data:`SCORERS` order; ValueError when a name
    is unknown or none is given."""
    names = [t.strip() for t in text.split(",") if t.strip()]
    bad = [n for n in names if n not in SCORERS]
    if bad or not names:
        raise ValueError(f"unknown scorer(s) {bad or [text]}: pick from {', '.join(SCORERS)}")
    return tuple(s for s in SCORERS if s in names)


def check_unseen(used: Sequence[int], train_windows: set[int]) -> None:
    """Raise ``AssertionError`` when a scored window is one of the explainer's train windows."""
    if train_windows.intersection(used):
        raise AssertionError("a detection/fuzzing window is among the explainer's train windows")


def pick_windows(
    active: Sequence[Window], candidates: Sequence[Window], m: float, rng: np.random.Generator
) -> tuple[list[Window], list[Window]]:
    """Step 1: ``(activating, non-activating)`` windows of one neuron side."""
    if not m > 0:
        return [], []
    cut = THRESHOLD * m
    act = [w for w in active if len(w.values) and w.values.max() >= cut]
    quiet = [w for w in candidates if not len(w.values) or w.values.max() < cut]
    n = min(len(act), len(quiet))
    pick = sorted(rng.choice(len(quiet), size=n, replace=False).tolist()) if n else []
    return act, [quiet[j] for j in pick]


def samples(
    kind: str,
    act: Sequence[Window],
    quiet: Sequence[Window],
    m: float,
    rng: np.random.Generator,
) -> list[Sample]:
    """Steps 2-4: the samples of ``kind`` (``detection`` / ``fuzzing``), shuffled."""
    cut = THRESHOLD * m
    out = [Sample(w.window, w.tokens, list(w.values >= cut), True) for w in act]
    if kind == "detection":
        out = [Sample(s.window, s.tokens, [False] * len(s.tokens), True) for s in out]
        out += [Sample(w.window, w.tokens, [False] * len(w.tokens), False) for w in quiet]
    else:
        k = max(1, round(float(np.mean([sum(s.marked) for s in out])))) if out else 1
        for w in quiet:
            marked = [False] * len(w.tokens)
            for j in rng.choice(len(w.tokens), size=min(k, len(w.tokens)), replace=False):
                marked[int(j)] = True
            out.append(Sample(w.window, w.tokens, marked, False))
    order = rng.permutation(len(out))
    return [out[int(j)] for j in order]


def batches(items: Sequence[Sample], n: int = N_SHOWN) -> list[list[Sample]]:
    return [list(items[lo : lo + n]) for lo in range(0, len(items), n)]


def request(
    kind: str, explanation: str, batch: Sequence[Sample], sign: Sign, logprobs: bool
) -> tuple[list[Message], dict[str, Any]]:
    """The chat request of one batch (step 4)."""
    msgs = classifier_messages(kind, explanation, [(s.tokens, s.marked) for s in batch], sign)
    params: dict[str, Any] = {"max_tokens": 4 * len(batch) + 16, "temperature": 0.0}
    if logprobs:
        params.update(logprobs=True, top_logprobs=5)
    return msgs, params


def parse(res: ChatResult | LLMServerError, n: int) -> tuple[list[int], list[float] | None] | None:
    """``(answers 0/1, P(1) per answer or None)`` of one batch; None when unparsable.

    Raises:
        LLMServerError: the request itself failed (a per-neuron error).
    """
    if isinstance(res, LLMServerError):
        raise res
    preds = parse_binary(res.texts[0] if res.texts else "", n)
    if preds is None:
        return None
    probs: list[float] | None = None
    if res.top_logprobs:
        steps = [t for t in res.top_logprobs[0] if t]
        picks = [max(t, key=t.__getitem__).strip().strip(",[]").strip() for t in steps]
        digit = [t for t, p in zip(steps, picks, strict=True) if p in ("0", "1")]
        got = [prob_one(t) for t in digit]
        if len(got) == n and all(len(t) > 1 for t in digit) and None not in got:
            probs = [float(p) for p in got if p is not None]
    return preds, probs


def balanced_accuracy(truth: np.ndarray, pred: np.ndarray) -> float:
    """``(TPR + TNR) / 2``; NaN when a class is empty."""
    truth, pred = truth.astype(bool), pred.astype(bool)
    if not truth.any() or truth.all():
        return math.nan
    return float((pred[truth].mean() + (~pred[~truth]).mean()) / 2)


def auc(truth: np.ndarray, score: np.ndarray) -> float:
    """Area under the ROC curve: P(score of a positive > score of a negative), ties half."""
    truth = truth.astype(bool)
    pos, neg = score[truth], score[~truth]
    if not len(pos) or not len(neg):
        return math.nan
    diff = pos[:, None] - neg[None, :]
    return float(((diff > 0).sum() + 0.5 * (diff == 0).sum()) / diff.size)


def score(
    groups: Sequence[Sequence[Sample]],
    answers: Sequence[tuple[list[int], list[float] | None] | None],
) -> dict[str, Any]:
    """Step 5 over one neuron side's batches and their parsed answers."""
    truth: list[bool] = []
    pred: list[int] = []
    prob: list[float] = []
    all_probs, invalid = True, 0
    for batch, ans in zip(groups, answers, strict=True):
        if ans is None:
            invalid += len(batch)
            continue
        truth += [s.truth for s in batch]
        pred += ans[0]
        if ans[1] is None:
            all_probs = False
        else:
            prob += ans[1]
    t = np.array(truth, bool)
    method = "logprobs" if all_probs and truth else "parsed"
    return {
        "balanced_accuracy": _num(balanced_accuracy(t, np.array(pred, bool))),
        "auc": _num(auc(t, np.array(prob))) if method == "logprobs" else None,
        "method": method,
        "n_invalid": invalid,
    }


def _num(x: float) -> float | None:
    return None if math.isnan(x) else x


@dataclass
class Plan:
    """One neuron side's samples per kind, batched, and the windows they came from."""

    groups: dict[str, list[list[Sample]]]
    activating: list[int]
    non_activating: list[int]


def neuron_windows(
    i: int,
    ex_windows: np.ndarray,
    ex_value: np.ndarray,
    rnd_values: dict[int, np.ndarray],
    excluded: set[int],
    tokens: dict[int, list[str]],
    start: int,
) -> tuple[list[Window], list[Window]]:
    """Neuron ``i``'s held-out example windows and its candidate random windows (signed values:
    ``ex_value [kh, ctx]`` and ``rnd_values`` are already on the side's scale)."""
    active = [
        Window(int(w), tokens[int(w)], ex_value[j, start : start + len(tokens[int(w)])])
        for j, w in enumerate(ex_windows)
        if w >= 0
    ]
    cands = [Window(w, tokens[w], v) for w, v in rnd_values.items() if w not in excluded]
    return active, cands


def plan(
    kinds: Sequence[str],
    active: Sequence[Window],
    cands: Sequence[Window],
    m: float,
    train_windows: set[int],
    rng: np.random.Generator,
) -> Plan:
    """Steps 1-4 for one neuron side: windows picked, checked unseen, samples batched."""
    act, quiet = pick_windows(active, cands, m, rng)
    check_unseen([w.window for w in (*act, *quiet)], train_windows)
    groups = {k: batches(samples(k, act, quiet, m, rng)) for k in kinds}
    return Plan(groups, [w.window for w in act], [w.window for w in quiet])


def result(
    p: Plan,
    kind: str,
    answers: Sequence[tuple[list[int], list[float] | None] | None],
    floor: Sequence[tuple[list[int], list[float] | None] | None] | None,
    from_neuron: int | None,
) -> dict[str, Any]:
    """The record of one scorer of one side: scores, floor, window counts and ids, method."""
    groups = p.groups[kind]
    fl = score(groups, floor) if floor is not None else None
    return {
        **score(groups, answers),
        "floor": {
            "from_neuron": from_neuron if fl is not None else None,
            "balanced_accuracy": fl["balanced_accuracy"] if fl else None,
            "auc": fl["auc"] if fl else None,
            "n_invalid": fl["n_invalid"] if fl else 0,
        },
        "n_windows": {"activating": len(p.activating), "non_activating": len(p.non_activating)},
        "windows": {"activating": p.activating, "non_activating": p.non_activating},
    }
