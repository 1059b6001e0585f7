"""Units: contiguous, covering, balanced by tokens; scanning ignores half-written folders."""

from __future__ import annotations

import itertools
from pathlib import Path

from neuron_signatures.scale.units import prefix_dir, scan, split_units, unit_dir


def test_split_units_cover_and_balance() -> None:
    tokens = [10, 10, 10, 10, 50, 10, 10, 10]
    units = split_units(tokens, 3)
    assert units[0][0] == 0 and units[-1][1] == len(tokens)
    assert all(a[1] == b[0] for a, b in itertools.pairwise(units))
    assert all(lo < hi for lo, hi in units)
    assert len(units) <= 3
    assert split_units([10] * 8, 4) == [[0, 2], [2, 4], [4, 6], [6, 8]]
    assert split_units([10] * 3, 100) == [[0, 1], [1, 2], [2, 3]]
    assert split_units([5], 4) == [[0, 1]]


def test_scan_keeps_finished_folders_only(tmp_path: Path) -> None:
    for d in (prefix_dir(tmp_path, 1), prefix_dir(tmp_path, 2), unit_dir(tmp_path, 1),
              unit_dir(tmp_path, 3), unit_dir(tmp_path, 4)):  # fmt: skip
        d.mkdir()
        (d / "atlas.json").write_text("{}")
    (tmp_path / "unit_0002.tmp-abc").mkdir()
    unit_dir(tmp_path, 5).mkdir()  # no manifest: not finished
    k, done = scan(tmp_path)
    assert (k, done) == (2, {3, 4})
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["prefix_0002", "unit_0003", "unit_0004", "unit_0005"]
