"""Atlas fixtures: a small corpus of the tiny tokenizer's words and small-atlas settings."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import pytest

from tests.tiny_models import WORDS

# Small enough for 2 CPU cores, big enough for several batches, ties and long documents.
SMALL = dict(
    ctx_len=12,
    top_k=4,
    interval_samples=3,
    batch_size=6,
    density_threshold=0.005,
    write_scores_k=5,
    checkpoint_every=10**9,
    progress=False,
    device="cpu",
    model_dtype="fp32",
)


def corpus_lines(n: int = 40, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    words = WORDS[:36]
    return [" ".join(rng.choice(words) for _ in range(rng.randint(1, 30))) for _ in range(n)]


@pytest.fixture(scope="session")
def corpus_txt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    p = tmp_path_factory.mktemp("corpus") / "corpus.txt"
    p.write_text("\n".join(corpus_lines()) + "\n")
    return p


def config(out: Path, corpus: Path | str | None, **kw: Any) -> Any:
    from neuron_signatures.atlas.build import AtlasConfig

    return AtlasConfig(
        out_dir=out, corpus=None if corpus is None else str(corpus), **{**SMALL, **kw}
    )


def build(lm: Any, out: Path, corpus: Path | str | None, **kw: Any) -> Path:
    from neuron_signatures.atlas.build import build_atlas

    on_batch = kw.pop("on_batch", None)
    return build_atlas(config(out, corpus, **kw), load=lambda _: lm, on_batch=on_batch)


def atlas_bytes(root: Path) -> dict[str, bytes]:
    """Every file of an atlas but build.json (timings) and the lock."""
    return {
        str(p.relative_to(root)): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.name not in ("build.json", ".lock")
    }
