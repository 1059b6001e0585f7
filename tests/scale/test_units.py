"""Units: contiguous, covering, balanced by tokens; scanning ignores half-written folders."""

from __future__ import annotations

import itertools
from pathlib import Path

from neuron_signatures.scale.units import pair_adjacent, scan, span_dir, split_units, unit_dir


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


def test_scan_keeps_finished_disjoint_spans(tmp_path: Path) -> None:
    # unit 0 and 1 were merged into span 0..2 but the merge stopped before removing them; span
    # 2..4 is finished; unit 4 is finished, unit 5 has no manifest, unit 6 is half-written.
    for a, b in ((0, 1), (1, 2), (0, 2), (2, 4), (4, 5)):
        d = span_dir(tmp_path, a, b)
        d.mkdir()
        (d / "atlas.json").write_text("{}")
    (tmp_path / "unit_0006.tmp-abc").mkdir()
    unit_dir(tmp_path, 5).mkdir()  # no manifest: not finished
    assert scan(tmp_path) == [(0, 2), (2, 4), (4, 5)]
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["span_0000_0002", "span_0002_0004", "unit_0004", "unit_0005"]


def test_pair_adjacent_uses_each_span_once() -> None:
    assert pair_adjacent([(0, 2), (2, 3), (3, 5), (6, 7), (7, 8)]) == [(0, 2, 3), (6, 7, 8)]
    assert pair_adjacent([(0, 1), (2, 3)]) == []
    assert pair_adjacent([]) == []
