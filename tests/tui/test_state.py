"""The browser's pure parts, without Textual: state, statistics, heat colours, ranking cursor."""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
import pytest

from neuron_signatures.analysis.results import RankedNeuron, Ranking
from neuron_signatures.errors import BadArgumentError
from neuron_signatures.neurons import NeuronId
from neuron_signatures.store import open_run
from neuron_signatures.tui.heat import heat_opacity, heat_rgb
from neuron_signatures.tui.ranking import RankingCursor
from neuron_signatures.tui.state import BrowserState, neuron_stats
from neuron_signatures.tui.widgets.token_strip import wrap_pieces
from neuron_signatures.tui.widgets.token_table import bar

from .conftest import D_MLP, N_LAYERS, SynthRun, make_acts, make_prompts


def test_neuron_stats_known_answer() -> None:
    s = neuron_stats(np.array([1.0, -3.0, 2.0, 0.0], np.float32))
    assert (s.max_val, s.max_idx, s.min_val, s.min_idx) == (2.0, 2, -3.0, 1)
    assert s.mean == 0.0
    assert s.std == pytest.approx(math.sqrt((1 + 9 + 4 + 0) / 4))
    assert s.max_abs == 3.0


def test_values_are_the_written_activations(synth_run: SynthRun) -> None:
    state = BrowserState(open_run(synth_run.path))
    for prompt, layer, neuron in [(0, 0, 0), (5, 3, 255), (11, 2, 77)]:
        state.jump(layer, neuron, prompt=synth_run.prompts[prompt]["probe_id"])
        np.testing.assert_array_equal(state.values(), synth_run.acts[prompt][layer, :, neuron])


def test_relative_moves_clamp_like_the_prototype(synth_run: SynthRun) -> None:
    state = BrowserState(open_run(synth_run.path))
    state.move_layer(-1)
    assert state.layer == 0
    state.move_layer(10)
    assert state.layer == N_LAYERS - 1
    state.move_neuron(100)
    state.move_neuron(100)
    assert state.neuron == 200
    state.move_neuron(100)
    assert state.neuron == D_MLP - 1
    state.move_neuron(-1000)
    assert state.neuron == 0
    state.move_token(-1)
    assert state.ctx_idx == 0
    state.move_token(1000)
    assert state.ctx_idx == state.seq_len - 1
    state.move_prompt(1)
    assert (state.prompt_idx, state.ctx_idx) == (1, 0)  # a new prompt starts at token 0
    state.move_prompt(-5)
    assert state.prompt_idx == 0
    state.move_prompt(1000)
    assert state.prompt_idx == len(synth_run.prompts) - 1


def test_window_range(synth_run: SynthRun) -> None:
    state = BrowserState(open_run(synth_run.path), prompt=5, window=15)  # 300 tokens
    assert state.window_range() == (0, 16)
    state.goto_ctx(100)
    assert state.window_range() == (85, 116)
    state.goto_ctx(299)
    assert state.window_range() == (284, 300)
    state.toggle_all()
    assert state.window_range() == (0, 300)
    state = BrowserState(open_run(synth_run.path), prompt=5, window=0, ctx_idx=7)
    assert state.window_range() == (7, 8)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"layer": 4}, "layer 4 is not in this run"),
        ({"neuron": 256}, "neuron 256 is out of range"),
        ({"neuron": -1}, "neuron -1 is out of range"),
        ({"prompt": 12}, "prompt index 12 is out of range"),
        ({"prompt": "nope"}, "no prompt with id 'nope'"),
        ({"ctx_idx": 400}, "ctx_idx 400 is out of range"),
        ({"window": -1}, "--window must be 0 or more"),
    ],
)
def test_bad_start_is_a_domain_error(synth_run: SynthRun, kwargs: dict, message: str) -> None:
    with pytest.raises(BadArgumentError, match=message):
        BrowserState(open_run(synth_run.path), **kwargs)


def test_prompt_by_id_or_negative_index(synth_run: SynthRun) -> None:
    run = open_run(synth_run.path)
    assert BrowserState(run, prompt=synth_run.prompts[3]["probe_id"]).prompt_idx == 3
    assert BrowserState(run, prompt="-1").prompt_idx == 11


def test_dialog_parsing_messages(synth_run: SynthRun) -> None:
    state = BrowserState(open_run(synth_run.path))
    assert state.parse_neuron(" 42 ") == NeuronId(0, 42)  # in the current layer
    assert state.parse_neuron("L3/N7") == state.parse_neuron("3:7") == NeuronId(3, 7)
    with pytest.raises(
        BadArgumentError, match=re.escape("neuron 300 is out of range: type 0..255")
    ):
        state.parse_neuron("300")
    with pytest.raises(BadArgumentError, match=re.escape("'x1' is not a neuron id: type it as")):
        state.parse_neuron("x1")
    with pytest.raises(BadArgumentError, match="neuron 256 is out of range"):
        state.parse_neuron("L1/N256")
    assert state.parse_layer("L2") == 2
    with pytest.raises(BadArgumentError, match=re.escape("layer 9 is out of range: type 0..3")):
        state.parse_layer("9")
    with pytest.raises(BadArgumentError, match="ctx_idx 99 is out of range"):
        state.parse_ctx("99")


def test_subset_of_layers(tmp_path: Path) -> None:
    from neuron_signatures.store.build import write_run

    prompts = make_prompts(2)
    acts = make_acts(prompts, d_mlp=8)
    write_run(tmp_path / "r", prompts, [a[:2] for a in acts], layers=[1, 3], n_layers=4)
    state = BrowserState(open_run(tmp_path / "r"))
    assert state.layer == 1
    state.move_layer(1)
    assert state.layer == 3
    np.testing.assert_array_equal(state.values(), acts[0][1, :, 0])
    with pytest.raises(BadArgumentError, match="layer 2 is not in this run"):
        state.parse_layer("2")
    assert state.parse_layer("1") == 1


def test_jump_is_atomic(synth_run: SynthRun) -> None:
    state = BrowserState(open_run(synth_run.path), prompt=2, neuron=3, ctx_idx=1)
    before = (state.prompt_idx, state.layer, state.neuron, state.ctx_idx)
    with pytest.raises(BadArgumentError):
        state.jump(1, 9, prompt="missing", ctx_idx=2)
    with pytest.raises(BadArgumentError):
        state.jump(7, 9)
    assert (state.prompt_idx, state.layer, state.neuron, state.ctx_idx) == before
    state.jump(1, 9, prompt=synth_run.prompts[5]["probe_id"], ctx_idx=5000)
    assert (state.prompt_idx, state.layer, state.neuron, state.ctx_idx) == (5, 1, 9, 299)


def test_heat_opacity_and_colour_known_answers() -> None:
    values = np.array([100.0, 2.0, 1.0, 0.0, -2.0, 0.02])  # BOS is left out of the maximum (2)
    min_op = 0.2
    r = 0.01
    expected = [1.0, 1.0, min_op + math.log10(5.5) * (1 - min_op), 0.0, 1.0]
    expected.append(min_op + math.log10(1 + 9 * r) * (1 - min_op))  # faint but visible
    np.testing.assert_allclose(heat_opacity(values, 1, min_op), expected)
    rgb = heat_rgb(values, (0, 0, 0), 1, min_op)
    assert rgb[1].tolist() == [52, 211, 153]  # full green
    assert rgb[4].tolist() == [251, 146, 60]  # full orange
    half = expected[2]
    assert rgb[2].tolist() == [round(half * 52), round(half * 211), round(half * 153)]
    white = heat_rgb(np.array([0.0, 0.0]), (255, 255, 255), 0, 0.0)
    assert white.tolist() == [[255, 255, 255], [255, 255, 255]]  # nothing to show: background


def test_bar_lengths() -> None:
    assert bar(1.0, 1.0, 10) == "█" * 10
    assert bar(-0.5, 1.0, 10) == "█" * 5
    assert bar(0.0625, 1.0, 10) == "▋"  # 5/8 of a cell
    assert bar(0.05, 1.0, 10) == "▌"  # 4/8 of a cell
    assert bar(3.0, 1.0, 4) == "█" * 4  # clipped
    assert bar(1.0, 0.0, 10) == ""


def test_wrap_pieces_keeps_tokens_whole() -> None:
    lines = wrap_pieces(["ab", "cde", "f", "東京", "0123456789"], 5)
    assert [[t for _, t in line] for line in lines] == [
        ["ab", "cde"],
        ["f", "東京"],
        ["01234"],
        ["56789"],
    ]
    assert lines[3][0][0] == 4  # a split token keeps its index


def _ranking(kind: str, rows: list[tuple[int, int]], meta: dict | None = None) -> Ranking:
    neurons = [
        RankedNeuron(
            i + 1, la, ne, 1.0 / (i + 1), "", {"ctx_idx": 3} if kind == "influence" else {}
        )
        for i, (la, ne) in enumerate(rows)
    ]
    return Ranking(Path(f"{kind}.json"), kind, kind, neurons, meta or {})


def test_ranking_cursor_steps_cycles_and_targets() -> None:
    peaks = _ranking("top_neurons", [(0, 1), (2, 3), (0, 1)])
    influence = _ranking("influence", [(1, 7)], {"prompt_id": "p1"})
    cur = RankingCursor([peaks, influence], {(2, 3): {"class": "lexical", "name": "capitals"}})
    assert cur.step(-1) is not None and cur.row == 0
    assert cur.step(1).neuron == 3
    cur.step(10)
    assert cur.row == 2
    assert cur.locate(0, 1) == 0 and cur.locate(5, 5) is None
    assert cur.target(cur.rows[0]).prompt_id is None
    assert cur.signature(2, 3) == "lexical: capitals"
    assert cur.signature(0, 1) is None
    cur.cycle(1)
    assert cur.ranking is influence and cur.row == -1
    t = cur.target(cur.step(1))
    assert (t.layer, t.neuron, t.prompt_id, t.ctx_idx) == (1, 7, "p1", 3)
    assert RankingCursor([]).step(1) is None
