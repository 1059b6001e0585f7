"""The heatmap settings of the sidebar: one :class:`HeatmapConfig` for every heatmap of the page."""

from __future__ import annotations

import streamlit as st

from .heatmap import NORMALIZATIONS, HeatmapConfig


def heatmap_settings(n_prompts: int) -> tuple[HeatmapConfig, str, int]:
    """Heatmap controls (applied to every heatmap); returns the config, prompt order and limit."""
    with st.sidebar.expander("Heatmap settings", expanded=False):
        cfg = HeatmapConfig(
            tokens_per_row=int(st.number_input("tokens_per_row", 5, 500, 50, 5, key="hm_tpr")),
            show_values=st.checkbox("values on tokens", True, key="hm_values"),
            exclude_bos=st.checkbox(
                "exclude BOS from max (and hide it in charts)", True, key="hm_bos"
            ),
            normalization=st.selectbox("normalization", NORMALIZATIONS, key="hm_norm"),
            value_decimals=int(st.number_input("decimals", 0, 6, 2, 1, key="hm_dec")),
            minimum_threshold=float(
                st.number_input(
                    "minimum_threshold", 0.0, 1e6, 5e-5, 1e-5, format="%.6f", key="hm_thr"
                )
            ),
            minimum_opacity=float(
                st.number_input("minimum_opacity", 0.0, 1.0, 0.05, 0.01, key="hm_minop")
            ),
            compact=st.checkbox("compact view", True, key="hm_compact"),
        )
        order = st.selectbox(
            "stacked prompt order",
            ["run", "peak"],
            key="hm_order",
            format_func=lambda o: "run order" if o == "run" else "peak |act| desc",
        )
        if int(st.session_state.get("hm_limit", 1)) > n_prompts:  # a smaller run was opened
            del st.session_state["hm_limit"]
        limit = st.number_input(
            "prompts shown (overlay, stacked)",
            1,
            max(1, n_prompts),
            min(50, max(1, n_prompts)),
            10,
            key="hm_limit",
        )
    return cfg, str(order), int(limit)
