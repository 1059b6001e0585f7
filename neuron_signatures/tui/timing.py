"""Responsiveness measurement: time from a key press to the repainted screen.

:class:`TimedBrowserApp` stamps every key event as it reaches the app and, when that key makes the
browser redraw, records the time until the screen has been re-rendered (Textual runs
``call_after_refresh`` callbacks once the compositor has painted the dirty widgets). The
benchmark (``benchmarks/bench_tui.py``) and the responsiveness test drive it with Textual's Pilot.
"""

from __future__ import annotations

from collections.abc import Sequence
from time import perf_counter
from typing import Any

import numpy as np
from textual import events

from .app import BrowserApp
from .screens import BrowserScreen


class _TimedScreen(BrowserScreen):
    def redraw(self) -> None:
        super().redraw()
        app = self.app
        if isinstance(app, TimedBrowserApp) and app.key_at is not None:
            start, app.key_at = app.key_at, None
            self.call_after_refresh(lambda: app.latencies_ms.append(1e3 * (perf_counter() - start)))


class TimedBrowserApp(BrowserApp):
    """The browser, recording ``latencies_ms``: key press → screen painted, one per redraw."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.latencies_ms: list[float] = []
        self.key_at: float | None = None

    async def on_event(self, event: events.Event) -> None:
        if isinstance(event, events.Key):
            self.key_at = perf_counter()
        await super().on_event(event)

    def get_default_screen(self) -> BrowserScreen:
        return _TimedScreen(self.state, self.ranking)


async def time_keys(app: TimedBrowserApp, pilot: Any, keys: Sequence[str]) -> list[float]:
    """Press ``keys`` one by one; the key-to-paint milliseconds of each (same order)."""
    out: list[float] = []
    for key in keys:
        before = len(app.latencies_ms)
        await pilot.press(key)
        for _ in range(1000):  # the paint callback may come a frame later
            if len(app.latencies_ms) > before:
                break
            await pilot.pause(0.005)
        else:
            raise RuntimeError(f"key {key!r} did not redraw the browser")
        out.append(app.latencies_ms[-1])
    return out


def summary(ms: Sequence[float]) -> dict[str, float]:
    """Median, 90th percentile and maximum of key-to-paint times (ms)."""
    a = np.asarray(ms, dtype=np.float64)
    return {
        "median": float(np.median(a)),
        "p90": float(np.percentile(a, 90)),
        "max": float(a.max()),
    }
