"""Responsiveness on a generated 1000-prompt run: key press to painted screen, and lazy reads."""

from __future__ import annotations

import pytest

from neuron_signatures.store import open_run
from neuron_signatures.store.run import Run
from neuron_signatures.tui import BrowserState
from neuron_signatures.tui.timing import TimedBrowserApp, summary, time_keys

from .conftest import SynthRun, build

pytestmark = pytest.mark.anyio

KEYS = [
    "n",
    "b",
    "right",
    "left",
    "down",
    "up",
    "right_square_bracket",
    "left_square_bracket",
    "pagedown",
    "pageup",
    "a",
    "a",
]


@pytest.fixture(scope="module")
def big_run(tmp_path_factory: pytest.TempPathFactory) -> SynthRun:
    return build(tmp_path_factory.mktemp("tui") / "big", 1000, d_mlp=64)


async def test_key_to_paint_well_under_100ms_on_1000_prompts(
    big_run: SynthRun, monkeypatch: pytest.MonkeyPatch
) -> None:
    reads: list[tuple[str, object]] = []
    real = Run.prompt_neuron

    def spy_prompt_neuron(self: Run, key: str | int, layer: int, neuron: int):  # type: ignore[no-untyped-def]
        reads.append(("prompt_neuron", self.prompt_index(key)))
        return real(self, key, layer, neuron)

    monkeypatch.setattr(Run, "prompt_neuron", spy_prompt_neuron)
    for name in ("neuron", "iter_blocks", "prompt_acts"):  # whole-run or whole-prompt reads
        monkeypatch.setattr(Run, name, lambda *a, _n=name, **k: reads.append((_n, None)))

    app = TimedBrowserApp(BrowserState(open_run(big_run.path), prompt=500))
    async with app.run_test(size=(140, 42)) as pilot:
        await pilot.pause()
        ms = await time_keys(app, pilot, KEYS * 3)
    stats = summary(ms)
    assert len(ms) == len(KEYS) * 3  # every key redrew
    assert stats["median"] < 100.0, stats
    assert {kind for kind, _ in reads} == {"prompt_neuron"}
    assert {p for _, p in reads} <= {499, 500, 501}  # only prompts that were on screen
