"""Signature files of different seed prompts never share a name (non-ASCII ids included)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

from neuron_signatures.errors import RunFormatError
from neuron_signatures.signatures.compute import file_stem
from neuron_signatures.store.manifest import read_manifest


def _stem(ids: list[str], seed: int) -> str:
    run = SimpleNamespace(prompts=[SimpleNamespace(probe_id=i) for i in ids])
    res = SimpleNamespace(seed_index=seed, selection=SimpleNamespace(tag="top_neurons_top50"))
    return file_stem(run, res)  # type: ignore[arg-type]


def test_seed_ids_that_safe_name_merges_get_distinct_stems() -> None:
    ids = ["東京", "大阪", "Q: a?", "Q: a!", "seed_prompt"]
    stems = [_stem(ids, k) for k in range(len(ids))]
    assert len(set(stems)) == len(ids)
    assert stems[-1] == "seed_prompt_top_neurons_top50"  # plain ids keep their readable name


def test_a_file_given_as_run_folder_says_so(tmp_path: Path) -> None:
    f = tmp_path / "manifest.json"
    f.write_text("{}")
    with pytest.raises(RunFormatError, match="is a file, not a run folder"):
        read_manifest(f)
