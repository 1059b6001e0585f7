"""The app in a real browser: headless Chromium renders the heatmap with no error box."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.web.browser import CHROMIUM, capture, console_messages, streamlit_app
from tests.web.fixtures import TOKENS

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"

pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists(),
    reason="Debian's chromium is not installed at /usr/bin/chromium "
    "(apt-get update && apt-get install -y chromium)",
)


def test_heatmap_renders_in_chromium(web_run: Path, tmp_path: Path) -> None:
    with streamlit_app(web_run, tmp_path / "streamlit.log") as url:
        shot = ARTIFACTS / "web_app.png"
        dom = capture(url, shot, tmp_path, 'class="nsh-cell"')
    log = (tmp_path / "streamlit.log").read_text(errors="replace")
    assert 'data-test-script-state="notRunning"' in dom, log[-2000:]
    assert "stException" not in dom and "Cannot open the run" not in dom
    # token heatmap of the first prompt + stacked heatmap of every prompt
    n_cells = len(TOKENS["seed_prompt"]) + sum(len(t) for t in TOKENS.values())
    assert len(re.findall(r'class="nsh-cell"', dom)) == n_cells
    assert "Selected neuron: layer 1, neuron 3" in dom
    assert "&lt;script&gt;" in dom  # the prompt's <script> token is text, not markup
    assert not console_messages(sorted(tmp_path.glob("profile*"))[-1])
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 20_000


def test_atlas_page_renders_in_chromium(web_atlas: Path, web_run: Path, tmp_path: Path) -> None:
    """The atlas neuron page, with a probe run, from a shared URL: no error box, no console
    error, every section drawn."""
    from neuron_signatures.atlas import open_atlas

    rec = open_atlas(web_atlas).neuron(1, 3)
    with streamlit_app(web_run, tmp_path / "streamlit.log", atlas=web_atlas) as url:
        shot = ARTIFACTS / "web_atlas.png"
        dom = capture(f"{url}/?layer=1&neuron=3", shot, tmp_path, 'class="nsa-intervals"')
    log = (tmp_path / "streamlit.log").read_text(errors="replace")
    assert 'data-test-script-state="notRunning"' in dom, log[-2000:]
    assert "stException" not in dom and "Cannot open" not in dom
    assert "L1/N3" in dom and "half-octave bins" in dom  # header, histogram
    assert "Top ± logits" in dom and "Interval samples" in dom
    assert len(re.findall(r'class="nsh-cell nsh-max"', dom)) >= len(rec.top) + len(rec.bottom)
    assert "Texas detector" in dom  # the probe run's signature
    profiles = sorted(tmp_path.glob("profile*"))
    # Chromium logs console.error / console.log / uncaught exceptions alike (no level in the
    # line); the page logs nothing at all when it works
    assert not console_messages(profiles[-1]), console_messages(profiles[-1])
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 20_000
