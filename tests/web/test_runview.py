"""RunView layout, per-prompt peaks, run discovery and analysis look-ups on a hand-built run."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from neuron_signatures.web.runview import discover_runs, load_analysis, load_view
from tests.web.fixtures import INFLUENCE_NAME, N13, TOKENS


def test_layout_and_neuron(web_run: Path) -> None:
    view = load_view(web_run)
    lengths = [len(t) for t in TOKENS.values()]
    assert view.lengths.tolist() == lengths
    assert view.starts.tolist() == [0, 6, 10, 15]
    assert view.bos_mask.sum() == 4 and view.bos_mask[view.starts].all()
    flat = view.neuron_flat(1, 3)
    assert np.allclose(flat, np.concatenate([np.array(v) for v in N13.values()]))
    assert view.neuron_flat(1, 3) is flat  # cached
    assert not flat.flags.writeable


def test_peaks_and_order(web_run: Path) -> None:
    view = load_view(web_run)
    peaks = view.peaks(view.neuron_flat(1, 3))
    # BOS (50) is skipped: seed -4 at 3, texas 8 at 1, xss 3 at 3, short -2 at 1
    assert peaks.ctx_idx.tolist() == [3, 1, 3, 1]
    assert peaks.value.tolist() == [-4.0, 8.0, 3.0, -2.0]
    assert peaks.abs_max.tolist() == [4.0, 8.0, 3.0, 2.0]
    flat = view.neuron_flat(1, 3)
    assert view.shown_prompts(flat, "peak", 10).tolist() == [1, 0, 2, 3]
    assert view.shown_prompts(flat, "run", 2).tolist() == [0, 1]


def test_discover_runs(tmp_path: Path, web_run: Path, bare_run: Path) -> None:
    (tmp_path / "a" / "deep").mkdir(parents=True)
    (tmp_path / "a" / "deep" / "manifest.json").write_text("{}")
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "manifest.json").write_text("{}")
    assert discover_runs(tmp_path) == [tmp_path / "a" / "deep", tmp_path / "b"]
    assert discover_runs(tmp_path / "missing") == []


def test_analysis_write_scores_matching(web_run: Path) -> None:
    a = load_analysis(web_run / "analysis")
    assert [r.name for r in a.influence] == [INFLUENCE_NAME]
    ws, note = a.write_scores(1, 3, web_run / "analysis" / INFLUENCE_NAME)
    assert ws is not None and ws["top_pos"][0]["token"] == "▁Austin"
    assert INFLUENCE_NAME in note
    # unmatched source: falls back to any file (the newest one wins)
    ws, note = a.write_scores(1, 3, None)
    assert ws is not None and ws["top_pos"][0]["token"] == "▁Sacramento"
    ws, note = a.write_scores(0, 5, web_run / "analysis" / INFLUENCE_NAME)
    assert ws is not None and note == "from another write_scores file"
    assert a.write_scores(1, 6, None) == (None, "")
    assert a.peak_row(0, 5)["mean_peak_abs"] == 4.0
    assert a.peak_row(1, 6) is None
    assert a.signatures[(1, 3)]["name"] == "Texas detector"


def test_tables(web_run: Path) -> None:
    from neuron_signatures.web.tables import peaks_table, token_table

    view = load_view(web_run)
    flat = view.neuron_flat(1, 3)
    t = token_table(view, flat, 0)
    assert t.to_dict("list") == {
        "ctx_idx": [0, 1, 2, 3, 4, 5],
        "token_id": [2, 101, 102, 103, 104, 105],
        "token": ["<bos>", " The", " capital", " of", " Texas", " is"],
        "activation": N13["seed_prompt"],
    }
    p = peaks_table(view, view.peaks(flat))
    assert p["peak_token"].tolist() == [" of", " Austin", "</script>", " hello"]
    assert p["peak_activation"].tolist() == [-4.0, 8.0, 3.0, -2.0]


def test_probe_peaks_of_a_signature() -> None:
    from neuron_signatures.web.tables import probe_peaks

    sig = {
        "probes": [
            {"probe_id": "a", "peak_token": "x", "peak_value": 1.5, "density": 0.2},
            {"probe_id": "b", "peak_token": "y", "peak_value": -2.0, "density": 0.1},
        ]
    }
    assert probe_peaks(sig).to_dict("list") == {
        "probe_id": ["a", "b"],
        "peak_token": ["x", "y"],
        "peak_value": [1.5, -2.0],
    }
    assert probe_peaks({"per_probe_peaks": {"a": 1.0}}).to_dict("list") == {
        "probe": ["a"],
        "per_probe_peaks": [1.0],
    }
    assert probe_peaks({"class": "semantic"}) is None
