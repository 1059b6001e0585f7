"""Streamlit web app: explore one neuron across the prompts of a run (Neuronpedia-style heatmaps),
over an atlas's corpus (its neuron pages and search), or in a folder of OpenAI NeuronRecords.

The pure parts (opacity and colour rules, HTML escaping, normalisation, selection modes, navigation
arithmetic, influence filtering, atlas example rows) live in :mod:`heatmap`, :mod:`selection` and
:mod:`examples` and import neither Streamlit nor torch. ``app.py`` is the Streamlit script
(``neuron-signatures app`` starts it); the run page is drawn by :mod:`sidebar` and :mod:`panels`,
the atlas pages by :mod:`atlasnav`, :mod:`atlasview` and :mod:`atlassearch`, NeuronRecord
folders by :mod:`recordsview`, and the Steer panel of both neuron pages by :mod:`steer`.
"""

from __future__ import annotations

from pathlib import Path

APP_SCRIPT = Path(__file__).resolve().parent / "app.py"

__all__ = ["APP_SCRIPT"]
