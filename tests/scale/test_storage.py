"""The shared-storage probe: a worker that cannot see the driver's output folder stops the build
with one line before any work (fake actors stand for Ray's: the probe is plain files)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from neuron_signatures.scale.storage import (
    PROBE,
    SharedStorageError,
    answer_probe,
    check_shared,
)


class Ref:
    def __init__(self, value: Any) -> None:
        self.value = value


class FakeRay:
    def get(self, refs: list[Ref], timeout: float | None = None) -> list[Any]:
        return [r.value for r in refs]


def actor(sees: Path | None) -> Any:
    """An actor whose file system shows ``sees`` at the driver's path (``None``: the same)."""

    def remote(folder: str, token: str) -> Ref:
        return Ref(answer_probe(str(sees or folder), token))

    return SimpleNamespace(probe_storage=SimpleNamespace(remote=remote))


def test_worker_answers_a_probe_it_can_read(tmp_path: Path) -> None:
    (tmp_path / f"{PROBE}tok").write_text("tok")
    r = answer_probe(str(tmp_path), "tok")
    assert "error" not in r
    assert (tmp_path / r["answer"]).read_text() == r["worker"]


def test_worker_without_the_probe_says_what_it_saw(tmp_path: Path) -> None:
    r = answer_probe(str(tmp_path), "tok")
    assert r["answer"] is None and "is not there" in r["error"]
    (tmp_path / f"{PROBE}tok").write_text("another")
    assert "another build" in answer_probe(str(tmp_path), "tok")["error"]
    assert [p.name for p in tmp_path.iterdir()] == [f"{PROBE}tok"]  # no answer written


def test_shared_folder_passes_and_leaves_no_probe(tmp_path: Path) -> None:
    check_shared(FakeRay(), [actor(None), actor(None)], tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_worker_on_another_disk_is_refused_in_one_line(tmp_path: Path) -> None:
    """The second worker's node has its own (empty) folder at that path: the driver's probe is
    not there, so the build is refused, naming the fix; no probe file is left behind."""
    shared, own_disk = tmp_path / "out", tmp_path / "node-b-local"
    shared.mkdir()
    own_disk.mkdir()
    with pytest.raises(SharedStorageError) as e:
        check_shared(FakeRay(), [actor(None), actor(own_disk)], shared)
    msg = str(e.value)
    assert "\n" not in msg and msg.startswith("1 of 2 Ray workers cannot share")
    assert "is not there" in msg and "storage every node mounts at the same path" in msg
    assert list(shared.iterdir()) == [] and list(own_disk.iterdir()) == []


def test_answer_the_driver_cannot_read_is_refused(tmp_path: Path) -> None:
    """A worker that reads the probe (a stale copy) but whose answer goes elsewhere."""
    shared, copy = tmp_path / "out", tmp_path / "copy"
    shared.mkdir()
    copy.mkdir()

    def remote(folder: str, token: str) -> Ref:
        (copy / f"{PROBE}{token}").write_text(token)
        return Ref(answer_probe(str(copy), token))

    lagging = SimpleNamespace(probe_storage=SimpleNamespace(remote=remote))
    with pytest.raises(SharedStorageError, match="did not appear in"):
        check_shared(FakeRay(), [lagging], shared)
