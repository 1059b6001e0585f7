"""The response cache: answers committed in batches; a committed answer is there for another
connection (another process, or a run resumed after ``kill -9``)."""

from __future__ import annotations

from pathlib import Path

import pytest

from neuron_signatures.explain import response_cache as R
from neuron_signatures.explain.response_cache import ResponseCache


def test_answers_are_committed_in_batches_and_committed_ones_survive(tmp_path: Path) -> None:
    """A second connection (another process, or the run resumed after kill -9) sees the
    committed answers and not those still pending."""
    cache = ResponseCache(tmp_path)
    for i in range(R.COMMIT_EVERY + 3):
        cache.put(f"k{i}", "chat/completions", {"i": i}, {"choices": [i]})
    other = ResponseCache(tmp_path)
    assert other.get("k0") == {"choices": [0]}  # the first full batch is committed
    assert other.get(f"k{R.COMMIT_EVERY + 2}") is None  # still pending in `cache`
    assert cache.get(f"k{R.COMMIT_EVERY + 2}") == {"choices": [R.COMMIT_EVERY + 2]}
    cache.flush()
    assert len(other.entries()) == R.COMMIT_EVERY + 3
    cache.close()
    other.close()


def test_a_slow_trickle_of_answers_is_committed_after_commit_s(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = ResponseCache(tmp_path)
    cache.put("a", "chat/completions", {}, {"choices": ["a"]})
    other = ResponseCache(tmp_path)
    assert other.get("a") is None
    monkeypatch.setattr(R, "COMMIT_S", 0.0)  # the next answer comes "later than" COMMIT_S
    cache.put("b", "chat/completions", {}, {"choices": ["b"]})
    assert other.get("a") == {"choices": ["a"]} and other.get("b") == {"choices": ["b"]}
    cache.close()
    other.close()
