"""Streamlit web app: explore one neuron across the prompts of a run (Neuronpedia-style heatmaps).

The pure parts (opacity and colour rules, HTML escaping, normalisation, selection modes, navigation
arithmetic, influence filtering) live in :mod:`heatmap` and :mod:`selection` and import neither
Streamlit nor torch. ``app.py`` is the Streamlit script (``neuron-signatures app`` starts it).
"""

from __future__ import annotations

from pathlib import Path

APP_SCRIPT = Path(__file__).resolve().parent / "app.py"

__all__ = ["APP_SCRIPT"]
