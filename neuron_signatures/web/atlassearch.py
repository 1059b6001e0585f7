"""The atlas search panels: which neurons a text excites, and which neurons a token drives.

Both are thin shells over :mod:`neuron_signatures.atlas.search`: text search runs the atlas's model
once on the text (loaded on the first search and cached, :func:`.cache.get_atlas_model`); token
search reads the atlas only. Every result row links to its neuron page (``?atlas=&layer=&neuron=``,
a new tab) and clicking a row opens that page here.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pandas as pd
import streamlit as st

from ..atlas import Atlas, search_text, search_token
from ..errors import NeuronSignaturesError
from ..tokens import token_display
from .atlasnav import show_neuron
from .cache import get_atlas_model

RANK_BY = {"value": "activation value", "frac_of_max": "fraction of the neuron's max"}
LINK = st.column_config.LinkColumn("page", display_text="open ↗", help="the neuron's page")


def neuron_link(atlas: Atlas, layer: int, index: int, base: str = "") -> str:
    """The shareable address of a neuron page: ``base`` (the app's URL; empty: relative to the
    page) and ``?atlas=&layer=&neuron=``."""
    root = str(Path(atlas.root).resolve())
    return f"{base}?" + urlencode({"atlas": root, "layer": layer, "neuron": index})


def app_url() -> str:
    """The app's URL in the browser, without the query (empty where unknown, e.g. in tests)."""
    try:
        return str(st.context.url or "").split("?")[0]
    except Exception:  # no browser session (bare script runs)
        return ""


def hits_table(atlas: Atlas, hits: list[Any], fields: tuple[str, ...]) -> pd.DataFrame:
    """One row per neuron: ``neuron`` (``L3/N12``), the hit's ``fields``, and its page link."""
    base = app_url()
    return pd.DataFrame(
        {
            "neuron": [f"L{h.layer}/N{h.index}" for h in hits],
            **{f: [getattr(h, f) for h in hits] for f in fields},
            "page": [neuron_link(atlas, h.layer, h.index, base) for h in hits],
            "layer": [h.layer for h in hits],
            "index": [h.index for h in hits],
        }
    )


def open_picked(key: str, df: pd.DataFrame) -> None:
    """A clicked row of a results table opens that neuron's page."""
    rows = st.session_state[key].selection.rows if key in st.session_state else []
    if rows and 0 <= rows[0] < len(df):
        show_neuron(int(df["layer"].iloc[rows[0]]), int(df["index"].iloc[rows[0]]))


def show_table(df: pd.DataFrame, key: str) -> None:
    """A results table; click a row (or its link) to open the neuron."""
    st.dataframe(
        df,
        hide_index=True,
        key=key,
        column_order=[c for c in df.columns if c not in ("layer", "index")],
        column_config={
            "page": LINK,
            "value": st.column_config.NumberColumn(format="%.4g"),
            "max_value": st.column_config.NumberColumn(format="%.4g"),
            "frac_of_max": st.column_config.NumberColumn(format="%.3f"),
        },
        on_select=functools.partial(open_picked, key, df),
        selection_mode="single-row",
    )


def text_panel(atlas: Atlas) -> None:
    """Search by text: the neurons each token of a text excites most, and overall."""
    ss = st.session_state
    st.markdown("#### Search by text")
    st.caption(
        f"Runs {atlas.model_name} on the text (loaded once, on the first search) and ranks the "
        "atlas's neurons on each token: by activation value, or by the value as a fraction of the "
        "neuron's max over the corpus."
    )
    with st.form("atlas_text_form"):
        text = st.text_area("text", key="atlas_text", height=80)
        c1, c2 = st.columns(2)
        rank_by = c1.selectbox(
            "rank by", list(RANK_BY), key="atlas_rank_by", format_func=RANK_BY.__getitem__
        )
        top_n = int(c2.number_input("neurons per token", 1, 200, 10, key="atlas_text_top"))
        go = st.form_submit_button("Search", key="atlas_text_go")
    if go:
        ss.pop("_text_search", None)
        if not str(text).strip():
            st.warning("Type a text to search.")
            return
        try:
            with st.spinner("Running the model on the text..."):
                lm = get_atlas_model(atlas)
                ss["_text_search"] = (
                    atlas.root,
                    search_text(atlas, str(text), top_n=top_n, lm=lm, rank_by=rank_by),
                )
        except NeuronSignaturesError as e:
            st.error(str(e))
            return
    root, res = ss.get("_text_search", (None, None))
    if res is None or root != atlas.root:
        return
    fields = ("value", "frac_of_max", "position")
    st.markdown(f"**Overall** (ranked by {RANK_BY.get(res.rank_by, res.rank_by)})")
    overall = hits_table(atlas, res.overall, fields)
    overall.insert(1, "token", [token_display(res.tokens[h.position]) for h in res.overall])
    show_table(overall, "atlas_text_overall")
    st.markdown("**Per token**")
    first = True
    for i, (tok, hits) in enumerate(zip(res.tokens, res.per_token, strict=True)):
        if not hits:  # BOS, unless the atlas counted it
            continue
        with st.expander(f"{i}: {token_display(tok)!r}", expanded=first):
            show_table(hits_table(atlas, hits, fields[:2]), f"atlas_text_tok{i}")
        first = False


def parse_token(text: str) -> str | int:
    """``#123`` (or ``id:123``) is a token id; anything else is the token's text."""
    t = text.strip()
    for prefix in ("#", "id:"):
        if t.startswith(prefix) and t[len(prefix) :].strip().isdigit():
            return int(t[len(prefix) :])
    return text


def token_panel(atlas: Atlas) -> None:
    """Search by token: the neurons whose top examples most often peak on a token."""
    ss = st.session_state
    st.markdown("#### Search by token")
    st.caption(
        "Neurons whose top examples sit on this token, most often first (`count` of its `of` "
        "top examples), then by the neuron's max over the atlas. `Austin`, ` Austin` and "
        "`▁Austin` each match both the word-start piece and the bare one; `#123` is token id 123."
    )
    with st.form("atlas_token_form"):
        c1, c2 = st.columns([3, 1])
        token = c1.text_input("token", key="atlas_token")
        top_n = int(c2.number_input("neurons", 1, 1000, 50, key="atlas_token_top"))
        go = st.form_submit_button("Search", key="atlas_token_go")
    if go:
        ss.pop("_token_search", None)
        if not str(token):
            st.warning("Type a token to search.")
            return
        try:
            ss["_token_search"] = (
                atlas.root,
                search_token(atlas, parse_token(str(token)), top_n=top_n),
            )
        except NeuronSignaturesError as e:
            st.error(str(e))
            return
    root, res = ss.get("_token_search", (None, None))
    if res is None or root != atlas.root:
        return
    ids = ", ".join(map(str, res.token_ids))
    st.caption(f"{res.query!r} → token id{'s' if len(res.token_ids) > 1 else ''} {ids}")
    if not res.hits:
        st.info("No neuron of the atlas has a top example on this token.")
        return
    show_table(hits_table(atlas, res.hits, ("count", "of", "max_value")), "atlas_token_hits")
