"""The Steer panel: edit the neuron on screen and compare the model's prediction before and after.

A thin shell over :mod:`neuron_signatures.interventions`:

1. A collapsed ``Steer`` expander holds the operation (set / scale / add), a value or multiplier
   slider, the prompt, the positions, tokens to list and the number of tokens to generate.
2. Nothing runs until **Run** is pressed: the model is then loaded once and cached (an atlas page
   shares the atlas's text-search model, :func:`.cache.get_atlas_model`; a run page caches the
   run's model here), and the interventions package (torch) is imported only then.
3. The result (kept per neuron in the session) shows KL(before‖after), the before/after top-10
   next tokens side by side, the listed tokens' logit / probability / rank and both
   continuations.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pandas as pd
import streamlit as st

from ..errors import NeuronSignaturesError
from ..tokens import token_display

OPS = {"set": "set to", "scale": "multiply by", "add": "add"}
KEY = "steer"


@st.cache_resource(show_spinner="Loading the run's model (once)...", max_entries=1)
def _run_model(name: str, dtype: str) -> Any:
    from .. import models

    return models.load_model(name, None, dtype)


def atlas_steer(atlas: Any, rec: Any) -> None:
    """The panel on an atlas neuron page (the model: the atlas's, shared with text search)."""
    from .cache import get_atlas_model

    s = rec.stats
    bound = max(abs(s.max), abs(s.min)) if s.count else 0.0
    steer_panel(rec.layer, rec.index, lambda: get_atlas_model(atlas), "", bound)


def run_steer(run: Any, layer: int, neuron: int) -> None:
    """The panel on a run's neuron page (the model: the run's, at its compute dtype)."""
    dtype = str(run.manifest.get("model_dtype", "auto"))
    prompt = run.prompts[0].text if run.prompts else ""
    steer_panel(layer, neuron, lambda: _run_model(run.model_name, dtype), prompt, 0.0)


def _inputs(prompt: str, bound: float) -> dict[str, Any] | None:
    """The panel's widgets; the values once Run is pressed, else None."""
    op = st.radio("operation", list(OPS), key=f"{KEY}_op", horizontal=True, format_func=OPS.get)
    reach = max(10.0, 4.0 * float(bound))  # a few times the neuron's largest |activation|
    with st.form(f"{KEY}_form"):
        text = st.text_area("prompt", prompt, key=f"{KEY}_prompt", height=70)
        if op == "scale":
            value = st.slider("multiplier", -5.0, 10.0, 0.0, 0.1, key=f"{KEY}_mult")
        else:
            value = st.slider(
                "value", -reach, reach, 0.0, reach / 200, key=f"{KEY}_value_{reach:g}"
            )
        c1, c2, c3 = st.columns(3)
        positions = c1.text_input(
            "positions", "last", key=f"{KEY}_positions", help="last, all, 3,5"
        )
        tokens = c2.text_input("tokens to list", "", key=f"{KEY}_tokens", help='" Austin| Dallas"')
        n_new = int(c3.number_input("generate tokens", 0, 100, 10, key=f"{KEY}_generate"))
        go = st.form_submit_button("Run", key=f"{KEY}_go")
    if not go:
        return None
    return dict(prompt=str(text), op=op, value=float(value), positions=positions, tokens=tokens,
                n_new=n_new)  # fmt: skip


def steer(lm: Any, layer: int, neuron: int, inp: dict[str, Any]) -> Any:
    """Run the edit of the panel's inputs (library calls only)."""
    from ..interventions import (
        Edit,
        InterventionSet,
        add_generation,
        parse_positions,
        run_interventions,
    )
    from ..interventions.run import listed_token_ids

    sets = [InterventionSet((Edit(layer, neuron, inp["op"], inp["value"]),), "after")]
    positions = parse_positions(inp["positions"])
    listed = listed_token_ids(lm.tokenizer, inp["tokens"])
    res = run_interventions(lm, inp["prompt"], sets, positions, listed)
    if inp["n_new"]:
        add_generation(lm, res, sets, positions, inp["n_new"])
    return res


def steer_panel(
    layer: int, neuron: int, load: Callable[[], Any], prompt: str, bound: float
) -> None:
    """The collapsed panel; ``load()`` returns the (cached) model when Run is pressed."""
    ss = st.session_state
    with st.expander("Steer", expanded=False):
        st.caption(
            f"Edit L{layer}/N{neuron} (blocks.{layer}.mlp.hook_post) on a prompt and compare the "
            "next-token prediction before and after. Positions: last (the prompt's last token), "
            "all (every position, generated ones too) or prompt positions such as 3,5."
        )
        inp = _inputs(prompt, bound)
        if inp is not None:
            ss.pop(f"{KEY}_result", None)
            try:
                with st.spinner("Running the model..."):
                    ss[f"{KEY}_result"] = ((layer, neuron), steer(load(), layer, neuron, inp))
            except NeuronSignaturesError as e:
                st.error(str(e))
                return
        where, res = ss.get(f"{KEY}_result", (None, None))
        if res is not None and where == (layer, neuron):
            show_result(res)


def _top(res: Any, r: int) -> pd.DataFrame:
    top = res.rows[r].top
    return pd.DataFrame(
        {"token": [token_display(t.token) for t in top], "prob": [t.prob for t in top],
         "token_id": [t.token_id for t in top]}
    )  # fmt: skip


def listed_table(res: Any) -> pd.DataFrame:
    """One row per listed token: logit, probability and rank before and after."""
    before, after = res.rows[0].listed, res.rows[1].listed
    data: dict[str, list] = {"token": [token_display(t.token) for t in before]}
    for name in ("logit", "prob", "rank"):
        data[f"{name} before"] = [getattr(t, name) for t in before]
        data[f"{name} after"] = [getattr(t, name) for t in after]
    return pd.DataFrame(data)


def show_result(res: Any) -> None:
    """KL, the before/after top tokens, listed tokens and continuations."""
    after = res.rows[1]
    where = "every position" if res.edited_positions is None else f"{res.edited_positions}"
    st.markdown(f"**{', '.join(after.edits)}** at positions {res.positions} ({where})")
    st.metric("KL(before‖after)", f"{after.kl:.4g} nats", help="Σ p_before log(p_before/p_after)")
    prob = {"prob": st.column_config.NumberColumn(format="%.4f")}
    c1, c2 = st.columns(2)
    for col, r, name in ((c1, 0, "before"), (c2, 1, "after")):
        col.caption(f"next token, {name}")
        col.dataframe(_top(res, r), hide_index=True, key=f"{KEY}_{name}", column_config=prob)
    if res.rows[0].listed:
        st.dataframe(listed_table(res), hide_index=True, key=f"{KEY}_listed")
    if res.generation is not None:
        c1, c2 = st.columns(2)
        for col, r, name in ((c1, 0, "before"), (c2, 1, "after")):
            col.caption(f"continuation, {name}")
            col.code(res.rows[r].continuation or "", language=None)
