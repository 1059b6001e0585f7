"""``browse --atlas``: the atlas view on a tiny atlas, compared with ``open_atlas(...).neuron()``.

The atlas is built once from the tiny random Gemma 2 model (layers 1 and 2 of 3, 64 neurons); the
run beside it is synthetic with the same shape and captures layers 0 and 1, so one layer is in
both and each side has a layer the other lacks.
"""

from __future__ import annotations

import json
import shutil
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from neuron_signatures.atlas import Atlas, NeuronAtlas, open_atlas
from neuron_signatures.cli import main
from neuron_signatures.neurons import NeuronId
from neuron_signatures.store import open_run
from neuron_signatures.tui import AtlasApp, AtlasState, BrowserState
from neuron_signatures.tui.cells import visible
from neuron_signatures.tui.heat import NEGATIVE_RGB, POSITIVE_RGB, scaled_rgb
from neuron_signatures.tui.keys import ATLAS_KEYS
from neuron_signatures.tui.screens import (
    AtlasScreen,
    GoToDialog,
    HelpScreen,
    LinkedBrowserScreen,
)
from neuron_signatures.tui.widgets import AtlasHeader, ExampleList, RunHeader, WriteScores
from neuron_signatures.tui.widgets.example_list import context_range, example_pieces, value_label

from .conftest import make_prompts

SIZE = (140, 42)
D_MLP = 64


@pytest.fixture(scope="module")
def tiny_atlas(tmp_path_factory: pytest.TempPathFactory, tiny_tokenizer: Any) -> Path:
    from neuron_signatures.models import wrap_hf_model
    from tests.atlas.conftest import build, corpus_lines
    from tests.tiny_models import make_models

    root = tmp_path_factory.mktemp("atlas")
    corpus = root / "corpus.txt"
    corpus.write_text("\n".join(corpus_lines()) + "\n")
    model, _ = make_models("gemma2")
    lm = wrap_hf_model(model, tiny_tokenizer, name="tiny-gemma2", dtype="fp32")
    return Path(build(lm, root / "A", corpus, layers=[1, 2]))


@pytest.fixture(scope="module")
def linked_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A synthetic run shaped like the tiny model (3 layers x 64) that captured layers 0, 1."""
    from neuron_signatures.store.build import write_run

    prompts = make_prompts(4)
    rng = np.random.default_rng(3)
    acts = [rng.normal(0, 1, (2, len(p["tokens"]), D_MLP)).astype(np.float32) for p in prompts]
    path = tmp_path_factory.mktemp("run") / "R"
    write_run(path, prompts, acts, layers=[0, 1], n_layers=3, save_dtype="fp32")
    return path


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def atlas_app(path: Path, layer: int = 2, neuron: int = 7, run: Path | None = None) -> AtlasApp:
    state = AtlasState(open_atlas(path), layer=layer, neuron=neuron)
    state.record()
    return AtlasApp(state, None if run is None else BrowserState(open_run(run)))


async def settle(app: AtlasApp, pilot: Any) -> None:
    """Wait for the worker reading a neuron, then for the screen to show it."""
    await pilot.pause()
    await app.workers.wait_for_complete()
    await pilot.pause()


def header(app: AtlasApp) -> list[str]:
    return str(app.atlas_screen.query_one(AtlasHeader).content).splitlines()


def listed(app: AtlasApp, which: str = "top") -> ExampleList:
    return app.atlas_screen.query_one(f"#{which}-examples", ExampleList)


def assert_shows(app: AtlasApp, rec: NeuronAtlas) -> None:
    """The header, both example lists and the write scores are those of ``rec``."""
    s = rec.stats
    lines = header(app)
    assert lines[0].startswith(f"L{rec.layer}/N{rec.index} | Layer {rec.layer} ")
    assert f"tokens seen {s.count} | density >0 {s.frac_positive:.1%}" in lines[2]
    assert f"max {s.max:+.4g}" in lines[2] and f"mean {s.mean:+.4g} ± std {s.std:.4g}" in lines[2]
    for which, examples in (("top", rec.top), ("bottom", rec.bottom)):
        lst = listed(app, which)
        assert [ex.value for ex in lst.examples] == [ex.value for ex in examples]
        assert lst.line_text(0).startswith(f"{which} examples ({len(examples)})")
        for y, ex in enumerate(examples, start=1):
            text = lst.line_text(y)
            assert text.startswith(value_label(ex.value))
            assert visible(ex.tokens[ex.position]) in text
    ws = str(app.atlas_screen.query_one(WriteScores).content)
    assert ws.startswith("promotes:") and f"{rec.write_top[0].score:+.3g}" in ws


# -- pure parts ------------------------------------------------------------------------------


def test_context_range_keeps_the_token_fits_the_width_and_leans_left() -> None:
    cells = [1] * 20
    assert context_range(cells, 10, 100) == (0, 20)  # everything fits
    lo, hi = context_range(cells, 10, 9)
    assert lo <= 10 < hi and hi - lo == 9 and 10 - lo > hi - 11  # more context on the left
    assert context_range(cells, 0, 5) == (0, 5)  # no left: the right takes the room
    assert context_range(cells, 19, 5) == (15, 20)
    assert context_range([3, 50, 3], 1, 10) == (1, 2)  # a token wider than the width stays
    wide = [2, 1, 2, 1, 2]
    for pos in range(5):
        for width in range(1, 9):
            lo, hi = context_range(wide, pos, width)
            assert lo <= pos < hi
            assert sum(wide[lo:hi]) <= width or hi - lo == 1


def test_example_pieces_mark_cuts_and_fit(tiny_atlas: Path) -> None:
    rec = open_atlas(tiny_atlas).neuron(2, 7)
    ex = rec.top[0]
    full = example_pieces(ex, 10_000)
    assert [p.token for p in full] == list(range(len(ex.tokens)))
    short = example_pieces(ex, 12)
    assert sum(len(p.text) for p in short) <= 12
    assert ex.position in [p.token for p in short]
    cut_left, cut_right = short[0].token == -1, short[-1].token == -1
    assert cut_left or cut_right
    assert cut_left == (short[int(cut_left)].token > 0)


def test_scaled_rgb_uses_the_given_scale() -> None:
    bg = (0, 0, 0)
    rgb = scaled_rgb(np.array([2.0, -2.0, 0.0, 4.0]), bg, scale=2.0)
    assert tuple(rgb[0]) == POSITIVE_RGB and tuple(rgb[1]) == NEGATIVE_RGB
    assert tuple(rgb[2]) == bg and tuple(rgb[3]) == POSITIVE_RGB  # clipped at the scale
    assert (scaled_rgb(np.array([1.0]), bg, scale=float("nan")) == 0).all()


def test_atlas_state_clamps_to_the_atlas_layers(tiny_atlas: Path) -> None:
    from neuron_signatures.errors import BadArgumentError

    s = AtlasState(open_atlas(tiny_atlas), layer=1, neuron=63)
    s.move_layer(-1)
    s.move_neuron(5)
    assert s.key == (1, 63)
    s.move_layer(5)
    assert s.key == (2, 63)
    with pytest.raises(BadArgumentError, match="layer 0 is not in the atlas"):
        s.jump(0, 3)
    with pytest.raises(BadArgumentError, match="neuron 64 is out of range"):
        s.jump(1, 64)
    assert s.key == (2, 63)  # a bad jump changes nothing
    assert s.parse_neuron("5") == NeuronId(2, 5) and s.parse_neuron("L1/N9") == NeuronId(1, 9)
    assert s.parse_layer("L1") == 1


# -- the view --------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_first_view_shows_the_neuron(tiny_atlas: Path) -> None:
    rec = open_atlas(tiny_atlas).neuron(2, 7)
    app = atlas_app(tiny_atlas)
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        assert isinstance(app.screen, AtlasScreen)
        assert_shows(app, rec)
        assert "no run open" in app.atlas_screen.status
        # The example's own token is the bold, underlined one.
        lst = listed(app)
        for y, ex in enumerate(rec.top, start=1):
            marked = [s.text for s in lst.render_line(y) if s.style and s.style.underline]
            assert marked == [visible(ex.tokens[ex.position])]


@pytest.mark.anyio
async def test_next_prev_layers_and_go_to(tiny_atlas: Path) -> None:
    atlas = open_atlas(tiny_atlas)
    app = atlas_app(tiny_atlas, layer=1, neuron=0)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("n", "n", "n", "b")
        await settle(app, pilot)
        assert app.atlas.key == (1, 2)
        assert_shows(app, atlas.neuron(1, 2))
        await pilot.press("left", "right", "right")  # clamped to the atlas's layers 1..2
        await settle(app, pilot)
        assert app.atlas.key == (2, 2)
        await pilot.press("pagedown")
        await settle(app, pilot)
        assert app.atlas.key == (2, D_MLP - 1)
        assert_shows(app, atlas.neuron(2, D_MLP - 1))

        await pilot.press("g")
        assert isinstance(app.screen, GoToDialog)
        await pilot.press(*"L0/N5", "enter")  # layer 0 is not in the atlas: the dialog stays
        assert isinstance(app.screen, GoToDialog)
        assert "layer 0 is not in the atlas" in app.screen.error
        await pilot.press("escape", "g", *"L1/N45", "enter")
        await settle(app, pilot)
        assert isinstance(app.screen, AtlasScreen) and app.atlas.key == (1, 45)
        assert_shows(app, atlas.neuron(1, 45))
        await pilot.press("g", *"17", "enter")  # a bare index stays in the layer
        await settle(app, pilot)
        assert app.atlas.key == (1, 17)
        await pilot.press("l", "2", "enter")
        await settle(app, pilot)
        assert app.atlas.key == (2, 17)
        assert_shows(app, atlas.neuron(2, 17))


@pytest.mark.anyio
async def test_neurons_are_read_off_the_event_loop(
    tiny_atlas: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    threads: list[bool] = []
    real = Atlas.neuron

    def spy(self: Atlas, layer: int, index: int, *a: Any) -> NeuronAtlas:
        threads.append(threading.current_thread() is threading.main_thread())
        return real(self, layer, index, *a)

    app = atlas_app(tiny_atlas, neuron=0)
    monkeypatch.setattr(Atlas, "neuron", spy)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("n")
        await settle(app, pilot)
        await pilot.press("b")  # cached: no second read
        await settle(app, pilot)
        assert threads == [False]
        assert header(app)[0].startswith("L2/N0 ")


@pytest.mark.anyio
async def test_e_without_a_run_says_so(tiny_atlas: Path) -> None:
    app = atlas_app(tiny_atlas)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("e")
        await pilot.pause()
        assert isinstance(app.screen, AtlasScreen)
        assert app.atlas_screen.status.startswith("no run is open")


@pytest.mark.anyio
async def test_e_switches_between_atlas_and_run_on_the_same_neuron(
    tiny_atlas: Path, linked_run: Path
) -> None:
    atlas = open_atlas(tiny_atlas)
    app = atlas_app(tiny_atlas, layer=1, neuron=9, run=linked_run)
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        assert "e: the run's prompts" in app.atlas_screen.status
        await pilot.press("e")
        await pilot.pause()
        assert isinstance(app.screen, LinkedBrowserScreen)
        run = app.screen.state
        assert (run.layer, run.neuron) == (1, 9)
        run_header = str(app.screen.query_one(RunHeader).content)
        assert "Layer 1/2 (captured 2) | Neuron 9/63" in run_header
        await pilot.press("question_mark")
        assert "the atlas's examples of this neuron" in str(
            app.screen.query_one("#help-text").content
        )
        await pilot.press("escape", "n", "n")  # the run browser's keys work as ever
        await pilot.press("e")
        await settle(app, pilot)
        assert isinstance(app.screen, AtlasScreen) and app.atlas.key == (1, 11)
        assert_shows(app, atlas.neuron(1, 11))

        await pilot.press("right", "e")  # layer 2 is not in the run: it keeps its neuron
        await pilot.pause()
        assert isinstance(app.screen, LinkedBrowserScreen)
        assert (app.screen.state.layer, app.screen.state.neuron) == (1, 11)
        await pilot.press("left", "e")  # layer 0 is not in the atlas: it keeps its neuron
        await settle(app, pilot)
        assert isinstance(app.screen, AtlasScreen) and app.atlas.key == (2, 11)
        assert "layer 0 is not in the atlas" in app.atlas_screen.status
        await pilot.press("n")  # the message goes with the next move
        assert app.atlas_screen.status.startswith("atlas examples | e: the run's prompts")


@pytest.mark.anyio
async def test_bottom_toggle_scroll_and_help(tiny_atlas: Path) -> None:
    app = atlas_app(tiny_atlas)
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        assert listed(app, "bottom").display
        await pilot.press("x")
        assert not listed(app, "bottom").display and not app.atlas.show_bottom
        await pilot.press("n")  # drawn while hidden, laid out again once shown
        await settle(app, pilot)
        await pilot.press("x")
        await pilot.pause()
        bottom = listed(app, "bottom")
        assert bottom.display and bottom.examples == app.atlas.record().bottom
        ex = bottom.examples[0]
        assert bottom.line_text(1) == value_label(ex.value) + "".join(map(visible, ex.tokens))
        await pilot.press("down", "up")  # scrolling short lists is harmless
        await pilot.press("question_mark")
        assert isinstance(app.screen, HelpScreen)
        lines = str(app.screen.query_one("#help-text").content).splitlines()
        assert lines[0] == "Atlas view — keys"
        for k in ATLAS_KEYS:
            assert any(line.strip().startswith(k.label) and k.help in line for line in lines), k
        await pilot.press("escape")
        assert isinstance(app.screen, AtlasScreen)


@pytest.mark.anyio
async def test_examples_fit_a_narrow_terminal(tiny_atlas: Path) -> None:
    app = atlas_app(tiny_atlas)
    async with app.run_test(size=(60, 24)) as pilot:
        await settle(app, pilot)
        lst = listed(app)
        for y in range(1, lst.size.height):
            assert lst.render_line(y).cell_length == lst.size.width
        ex = lst.examples[0]
        assert visible(ex.tokens[ex.position]) in lst.line_text(1)


# -- the command -----------------------------------------------------------------------------


@pytest.fixture
def started(monkeypatch: pytest.MonkeyPatch) -> list[AtlasApp]:
    apps: list[AtlasApp] = []
    monkeypatch.setattr(AtlasApp, "run", lambda self, **kw: apps.append(self))
    return apps


def test_browse_atlas_flags(tiny_atlas: Path, linked_run: Path, started: list[AtlasApp]) -> None:
    assert main(["browse", "--atlas", str(tiny_atlas), "--neuron", "L1/N5"]) == 0
    assert main(["browse", "--atlas", str(tiny_atlas), "--layer", "2", "--neuron", "3"]) == 0
    flags = ["--atlas", str(tiny_atlas), "--run_dir", str(linked_run), "--prompt_idx", "2"]
    assert main(["browse", *flags, "--neuron", "1:8"]) == 0
    assert main(["browse", *flags]) == 0  # atlas layer 1 first; the run starts on it too
    a, b, c, d = started
    assert a.atlas.key == (1, 5) and a.state is None
    assert b.atlas.key == (2, 3)
    assert c.atlas.key == (1, 8) and c.state is not None
    assert (c.state.layer, c.state.neuron, c.state.prompt_idx) == (1, 8, 2)
    assert d.atlas.key == (1, 0) and d.state is not None and d.state.layer == 1


def test_browse_atlas_screenshot(tiny_atlas: Path, tmp_path: Path) -> None:
    out = tmp_path / "img" / "atlas.svg"
    flags = ["--neuron", "L2/N7", "--screenshot", str(out), "--screenshot_size", "120x36"]
    assert main(["browse", "--atlas", str(tiny_atlas), *flags]) == 0
    svg = out.read_text()
    assert svg.startswith("<svg") and "L2/N7" in svg and "top&#160;examples" in svg


@pytest.fixture
def broken_atlases(tiny_atlas: Path, tmp_path: Path) -> dict[str, Path]:
    unfinished = tmp_path / "unfinished"
    shutil.copytree(tiny_atlas, unfinished)
    m = json.loads((unfinished / "atlas.json").read_text())
    m["complete"] = False
    (unfinished / "atlas.json").write_text(json.dumps(m))
    no_layer = tmp_path / "no_layer"
    shutil.copytree(tiny_atlas, no_layer)
    (no_layer / "layers" / "layer_002.safetensors").unlink()
    return {"unfinished": unfinished, "no_layer": no_layer}


def test_browse_errors_are_one_line(
    tiny_atlas: Path,
    linked_run: Path,
    tmp_path: Path,
    broken_atlases: dict[str, Path],
    started: list[AtlasApp],
    capsys: pytest.CaptureFixture[str],
) -> None:
    from tests.tui.conftest import build

    other = build(tmp_path / "other", 2).path  # 4 layers x 256: another model
    cases = [
        ([], "needs --run_dir RUN"),
        (["--atlas", str(linked_run)], "is not an atlas"),
        (["--atlas", str(tmp_path / "missing")], "is not an atlas"),
        (["--atlas", str(broken_atlases["unfinished"])], "is not finished"),
        (["--atlas", str(broken_atlases["no_layer"]), "--neuron", "L2/N1"], "cannot read L2/N1"),
        (["--atlas", str(tiny_atlas), "--neuron", "L0/N1"], "layer 0 is not in the atlas"),
        (["--atlas", str(tiny_atlas), "--neuron", "64"], "neuron 64 is out of range"),
        (["--atlas", str(tiny_atlas), "--run_dir", str(other)], "are of different models"),
        (["--atlas", str(tiny_atlas), "--run_dir", str(tmp_path / "nope")], "does not exist"),
    ]
    for flags, message in cases:
        capsys.readouterr()
        assert main(["browse", *flags]) == 2, flags
        err = capsys.readouterr().err
        assert err.startswith("error: ") and message in err and err.count("\n") == 1, (flags, err)
    assert not started
