"""The app in a real browser: headless Chromium renders the heatmap with no error box."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.web.browser import CHROMIUM, capture, streamlit_app
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
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 20_000
